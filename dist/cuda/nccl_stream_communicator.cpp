// NcclStreamCommunicator (nccl_stream_communicator.h): the communication stream and the events
// that order it against the caller's stream.
#include "dist/cuda/nccl_stream_communicator.h"

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/cuda/launch.h"

namespace tg::dist {

NcclStreamCommunicator::NcclStreamCommunicator(TcpStore& store, const LaunchEnv& env, std::chrono::milliseconds timeout)
    : device_(env.local_rank), comm_(join_nccl(store, env, timeout)) {
  DeviceGuard guard(device_);
  TG_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TG_CUDA_CHECK(cudaEventCreateWithFlags(&caller_ready_, cudaEventDisableTiming));
  TG_CUDA_CHECK(cudaEventCreateWithFlags(&collectives_done_, cudaEventDisableTiming));
}

NcclStreamCommunicator::~NcclStreamCommunicator() {
  // Nothing queued may outlive the stream; a peer that stopped answering makes synchronize
  // abort the communicator (NCCL's kernels then return) instead of hanging here.
  try {
    if (!comm_.aborted()) comm_.synchronize(stream_, "the last collectives");
  } catch (const Error&) {
  }
  try {
    DeviceGuard guard(device_);
    (void)cudaEventDestroy(collectives_done_);
    (void)cudaEventDestroy(caller_ready_);
    (void)cudaStreamDestroy(stream_);
  } catch (const Error&) {  // the device could not be made current: the process is ending badly anyway
  }
}

void NcclStreamCommunicator::follow_caller() {
  TG_CUDA_CHECK(cudaEventRecord(caller_ready_, current_stream()));
  TG_CUDA_CHECK(cudaStreamWaitEvent(stream_, caller_ready_, 0));
}

void NcclStreamCommunicator::all_reduce(const Tensor& tensor, ReduceOp op) {
  DeviceGuard guard(device_);
  follow_caller();
  comm_.all_reduce(tensor, op, stream_);
}

void NcclStreamCommunicator::broadcast(const Tensor& tensor, int root) {
  DeviceGuard guard(device_);
  follow_caller();
  comm_.broadcast(tensor, root, stream_);
}

void NcclStreamCommunicator::wait() {
  DeviceGuard guard(device_);
  TG_CUDA_CHECK(cudaEventRecord(collectives_done_, stream_));
  TG_CUDA_CHECK(cudaStreamWaitEvent(current_stream(), collectives_done_, 0));
}

void NcclStreamCommunicator::synchronize(const std::string& what) {
  comm_.synchronize(stream_, what);
  wait();
}

std::unique_ptr<Communicator> open_nccl_communicator(TcpStore& store, const LaunchEnv& env,
                                                     std::chrono::milliseconds timeout) {
  TG_CUDA_CHECK(cudaSetDevice(env.local_rank));
  return std::make_unique<NcclStreamCommunicator>(store, env, timeout);
}

}  // namespace tg::dist
