// NcclStreamCommunicator: the Communicator (dist/communicator.h) of CUDA tensors — an
// NcclCommunicator whose collectives run on a communication stream of its own, ordered against
// the caller's current stream (tg::current_stream()) with events, as Note [communicator
// ordering] states: each collective first makes the communication stream wait for an event
// recorded on the caller's stream (so it reads what the caller's kernels wrote), wait() makes
// the caller's stream wait for an event recorded after the last collective, and synchronize()
// polls the communication stream with the communicator's timeout (NcclCommunicator::
// synchronize: a peer that stopped answering aborts the communicator and is reported instead of
// hanging the process). The communication stream is non-blocking, so it does not serialize with
// the legacy default stream the trainer's kernels run on: the buckets' all-reduces overlap
// backward. Built only with NCCL (TG_WITH_NCCL).
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <memory>

#include "dist/communicator.h"
#include "dist/cuda/nccl_communicator.h"

namespace tg::dist {

class NcclStreamCommunicator final : public Communicator {
 public:
  // Step 2 of the rendezvous (join_nccl: the unique id through `store`, the communicator on
  // cuda:LOCAL_RANK) and the stream and events on that device.
  NcclStreamCommunicator(TcpStore& store, const LaunchEnv& env, std::chrono::milliseconds timeout);
  // Waits for the communication stream (unless aborted), then destroys stream and events.
  ~NcclStreamCommunicator() override;
  NcclStreamCommunicator(const NcclStreamCommunicator&) = delete;
  NcclStreamCommunicator& operator=(const NcclStreamCommunicator&) = delete;

  int rank() const override { return comm_.rank(); }
  int world_size() const override { return comm_.world_size(); }
  Device device() const override { return Device::cuda(device_); }

  void all_reduce(const Tensor& tensor, ReduceOp op) override;
  void broadcast(const Tensor& tensor, int root) override;
  void wait() override;
  void synchronize(const std::string& what) override;
  void abort() override { comm_.abort(); }

 private:
  // The communication stream waits for the work queued so far on the caller's stream.
  void follow_caller();

  int device_;
  NcclCommunicator comm_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t caller_ready_ = nullptr, collectives_done_ = nullptr;
};

// The communicator of a data-parallel CUDA run: makes cuda:LOCAL_RANK this process's current
// device first (so that no rank creates a context on another rank's GPU), then joins.
std::unique_ptr<Communicator> open_nccl_communicator(TcpStore& store, const LaunchEnv& env,
                                                     std::chrono::milliseconds timeout);

}  // namespace tg::dist
