// Communicator: the collectives a data-parallel trainer needs, whatever carries them. Two
// implementations: StoreCommunicator (dist/store_communicator.h; CPU tensors over the job's
// TcpStore, for CPU runs and CI) and NcclStreamCommunicator (dist/cuda/; CUDA tensors over NCCL
// on a communication stream of its own).
//
// Note [communicator ordering]: a collective is ordered after everything the caller has queued
// so far on its current stream (tg::current_stream() on CUDA; the CPU runs in program order) and
// may complete later, in the background. wait() orders the caller's later work after every
// collective queued so far without blocking the host; synchronize() blocks the host until they
// have completed, at most the communicator's timeout. A tensor handed to a collective must stay
// alive and untouched until then (the trainer's bucket buffers live as long as the run; a
// temporary is freed only after wait() or synchronize()). Every rank must issue the same
// collectives in the same order. A rank that does not answer within the timeout is named in a
// DistributedError, after which the communicator is aborted.
#pragma once

#include <string>

#include "core/tensor.h"

namespace tg::dist {

enum class ReduceOp { sum, average };

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // The device whose tensors this communicator reduces.
  virtual Device device() const = 0;

  // In place over all ranks: every rank's `tensor` becomes the sum (or the average) of all
  // ranks' tensors. Contiguous, on device(); average needs a floating dtype.
  virtual void all_reduce(const Tensor& tensor, ReduceOp op) = 0;
  // In place: every rank's `tensor` becomes rank `root`'s.
  virtual void broadcast(const Tensor& tensor, int root) = 0;
  // The caller's later work on its current stream runs after every collective queued so far.
  virtual void wait() = 0;
  // Returns when every collective queued so far has completed (and wait()'s ordering holds);
  // DistributedError (communicator aborted) after the timeout. `what` names the work in the
  // message ("the gradient all-reduce of step 12").
  virtual void synchronize(const std::string& what) = 0;
  // Gives up (idempotent): pending and later collectives fail instead of waiting for peers.
  virtual void abort() = 0;
};

}  // namespace tg::dist
