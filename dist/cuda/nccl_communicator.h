// NcclCommunicator: one rank's NCCL communicator on one GPU, for the data-parallel gradient
// all-reduce and the start-of-training broadcast. Built only when NCCL is found
// (TG_WITH_NCCL; see dist/data_parallel.h for builds without it).
//
// The communicator is non-blocking (ncclConfig_t.blocking = 0), so no call can hang the
// process: initialization and every wait poll the communicator's asynchronous error and give
// up at the timeout by aborting the communicator (ncclCommAbort) and throwing a
// DistributedError that names this rank and the operation. Every NCCL return code is checked:
// a failure is a BackendError naming the call, file:line, NCCL's error string and its last
// error message; the communicator is aborted first, because NCCL cannot continue after an error.
// Collectives are queued on the caller's stream; ordering them against the producers and
// consumers of the tensor on other streams is the caller's job (events).
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "dist/communicator.h"
#include "dist/env.h"
#include "dist/store.h"

struct ncclComm;  // nccl.h: typedef struct ncclComm* ncclComm_t

namespace tg::dist {

constexpr size_t kNcclUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
using NcclUniqueId = std::array<uint8_t, kNcclUniqueIdBytes>;

// A fresh unique id (rank 0 makes it and sends it to the others through the store).
NcclUniqueId make_nccl_unique_id();

class NcclCommunicator {
 public:
  // Joins the communicator `id` as `rank` of `world_size` on cuda:`device`; DistributedError
  // when the other ranks have not joined within `timeout` (then aborted).
  NcclCommunicator(const NcclUniqueId& id, int rank, int world_size, int device, std::chrono::milliseconds timeout);
  // Finalizes (waiting at most the timeout) and destroys; aborts instead after a failure.
  ~NcclCommunicator();
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

  // In place over all ranks, queued on `stream`. `tensor`: contiguous, on this communicator's
  // device; average needs a floating dtype (f32, f64, bf16); TypeError/ValueError otherwise.
  void all_reduce(const Tensor& tensor, ReduceOp op, cudaStream_t stream);
  // In place: every rank's `tensor` becomes rank `root`'s.
  void broadcast(const Tensor& tensor, int root, cudaStream_t stream);
  // Returns when the work queued on `stream` has finished; DistributedError (after aborting) when
  // it has not within the timeout, BackendError when NCCL reports an asynchronous error.
  // `what` names the work in the messages ("the gradient all-reduce of step 12").
  void synchronize(cudaStream_t stream, const std::string& what);
  // Aborts the communicator (idempotent): pending and later collectives fail instead of hanging.
  void abort();
  bool aborted() const { return comm_ == nullptr; }

 private:
  // Polls the communicator until it leaves ncclInProgress; aborts and throws at the timeout or
  // on an error. `what` names the operation.
  void wait_ready(const std::string& what);
  // Checks `result` of NCCL call `call`: ncclInProgress waits with wait_ready; an error aborts
  // and throws BackendError.
  void check(int result, const char* call, const char* file, int line);
  void check_tensor(const Tensor& tensor, const char* op) const;
  std::string who() const;

  ncclComm* comm_ = nullptr;
  int rank_, world_size_, device_;
  std::chrono::milliseconds timeout_;
};

// Step 2 of the rendezvous (dist/rendezvous.h): rank 0 makes the unique id and publishes it
// under kNcclIdKey; every rank reads it and joins the communicator on cuda:LOCAL_RANK, waiting at
// most `timeout` for the others.
NcclCommunicator join_nccl(TcpStore& store, const LaunchEnv& env, std::chrono::milliseconds timeout);

}  // namespace tg::dist
