// NcclCommunicator (nccl_communicator.h): non-blocking NCCL communicator, checked calls, polling
// waits with a timeout that abort the communicator.
#include "dist/cuda/nccl_communicator.h"

#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "core/cuda/cuda_check.h"
#include "core/cuda/device_guard.h"
#include "core/error.h"
#include "dist/rendezvous.h"

static_assert(tg::dist::kNcclUniqueIdBytes == NCCL_UNIQUE_ID_BYTES);
static_assert(sizeof(ncclUniqueId) == NCCL_UNIQUE_ID_BYTES);

#define TG_NCCL_CHECK(call) check((call), #call, __FILE__, __LINE__)

namespace tg::dist {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollInterval = std::chrono::microseconds(100);

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
  }
  TG_INTERNAL_ASSERT(false, "unknown dtype ", static_cast<int>(dtype));
}

std::string error_text(ncclResult_t result, ncclComm_t comm) {
  const char* last = ncclGetLastError(comm);
  return detail::concat(ncclGetErrorString(result), " (ncclResult_t ", static_cast<int>(result), ")",
                        last != nullptr && *last != '\0' ? std::string("; NCCL's last error: ") + last : "");
}

}  // namespace

NcclUniqueId make_nccl_unique_id() {
  ncclUniqueId id;
  const ncclResult_t result = ncclGetUniqueId(&id);
  TG_CHECK(result == ncclSuccess, BackendError, "NCCL call ncclGetUniqueId(&id) failed at ", __FILE__, ":", __LINE__,
           ": ", error_text(result, nullptr));
  NcclUniqueId out;
  std::memcpy(out.data(), id.internal, out.size());
  return out;
}

NcclCommunicator::NcclCommunicator(const NcclUniqueId& id, int rank, int world_size, int device,
                                   std::chrono::milliseconds timeout)
    : rank_(rank), world_size_(world_size), device_(device), timeout_(timeout) {
  TG_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, ValueError, "NcclCommunicator: rank must be in [0, ",
           world_size, "), got ", rank);
  TG_CHECK(timeout.count() > 0, ValueError, "NcclCommunicator: the timeout must be positive, got ", timeout.count(),
           " ms");
  DeviceGuard guard(device_);
  ncclUniqueId raw;
  std::memcpy(raw.internal, id.data(), id.size());
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t result = ncclCommInitRankConfig(&comm, world_size, raw, rank, &config);
  comm_ = comm;
  // Non-blocking: the call returns ncclInProgress and the join completes in the background.
  if (result != ncclInProgress)
    check(result, "ncclCommInitRankConfig(&comm, world_size, id, rank, &config)", __FILE__, __LINE__);
  wait_ready("joining the communicator of " + std::to_string(world_size) + " ranks");
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ == nullptr) return;
  try {
    DeviceGuard guard(device_);
    // Finalize flushes the queued work and completes asynchronously (non-blocking communicator);
    // destroy once it has, abort when it fails or outlasts the timeout.
    ncclResult_t state = ncclCommFinalize(comm_);
    const auto deadline = Clock::now() + timeout_;
    while (state == ncclInProgress && Clock::now() < deadline) {
      std::this_thread::sleep_for(kPollInterval);
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) state = ncclInternalError;
    }
    if (state == ncclSuccess)
      (void)ncclCommDestroy(comm_);
    else
      (void)ncclCommAbort(comm_);
  } catch (const Error&) {  // the device could not be made current: free what NCCL can
    (void)ncclCommAbort(comm_);
  }
}

std::string NcclCommunicator::who() const {
  return detail::concat("NCCL rank ", rank_, " of ", world_size_, " on cuda:", device_);
}

void NcclCommunicator::abort() {
  if (comm_ == nullptr) return;
  DeviceGuard guard(device_);
  (void)ncclCommAbort(comm_);
  comm_ = nullptr;
}

void NcclCommunicator::check(int result_code, const char* call, const char* file, int line) {
  const auto result = static_cast<ncclResult_t>(result_code);
  if (result == ncclSuccess) return;
  if (result == ncclInProgress && comm_ != nullptr) return wait_ready(call);
  const std::string message = detail::concat(who(), ": NCCL call ", call, " failed at ", file, ":", line, ": ",
                                             error_text(result, comm_), "; communicator aborted");
  abort();
  throw BackendError(message);
}

void NcclCommunicator::wait_ready(const std::string& what) {
  const auto deadline = Clock::now() + timeout_;
  while (true) {
    ncclResult_t state = ncclSuccess;
    TG_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      const std::string message = detail::concat(who(), ": ", what, " failed: ", error_text(state, comm_),
                                                 "; communicator aborted");
      abort();
      throw BackendError(message);
    }
    if (Clock::now() >= deadline) {
      abort();
      TG_THROW(DistributedError, who(), ": ", what, " did not complete within ", timeout_.count(),
               " ms; communicator aborted (another rank failed, stopped or never joined)");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

void NcclCommunicator::check_tensor(const Tensor& tensor, const char* op) const {
  TG_CHECK(comm_ != nullptr, DistributedError, who(), ": ", op, " on an aborted communicator");
  TG_CHECK(tensor.device() == Device::cuda(device_), TypeError, who(), ": ", op, " expects a tensor on cuda:", device_,
           ", got one on ", tensor.device().str());
  TG_CHECK(tensor.is_contiguous(), ValueError, who(), ": ", op, " expects a contiguous tensor, got shape ",
           tensor.shape().str(), " with strides that are not contiguous");
}

void NcclCommunicator::all_reduce(const Tensor& tensor, ReduceOp op, cudaStream_t stream) {
  check_tensor(tensor, "all_reduce");
  TG_CHECK(op != ReduceOp::average || is_floating(tensor.dtype()), TypeError, who(),
           ": all_reduce average expects a floating dtype (f32, f64, bf16), got ", dtype_name(tensor.dtype()));
  DeviceGuard guard(device_);
  void* data = tensor.raw_data();
  TG_NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                              op == ReduceOp::average ? ncclAvg : ncclSum, comm_, stream));
}

void NcclCommunicator::broadcast(const Tensor& tensor, int root, cudaStream_t stream) {
  check_tensor(tensor, "broadcast");
  TG_CHECK(root >= 0 && root < world_size_, ValueError, who(), ": broadcast root must be in [0, ", world_size_,
           "), got ", root);
  DeviceGuard guard(device_);
  void* data = tensor.raw_data();
  TG_NCCL_CHECK(ncclBroadcast(data, data, static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()), root, comm_,
                              stream));
}

void NcclCommunicator::synchronize(cudaStream_t stream, const std::string& what) {
  TG_CHECK(comm_ != nullptr, DistributedError, who(), ": synchronize (", what, ") on an aborted communicator");
  DeviceGuard guard(device_);
  const auto deadline = Clock::now() + timeout_;
  while (true) {
    const cudaError_t status = cudaStreamQuery(stream);
    if (status != cudaSuccess && status != cudaErrorNotReady) {
      abort();  // the stream failed: NCCL's queued work cannot complete either
      TG_CUDA_CHECK(status);
    }
    ncclResult_t state = ncclSuccess;
    TG_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
    if (state != ncclSuccess && state != ncclInProgress) {
      const std::string message = detail::concat(who(), ": ", what, " failed: ", error_text(state, comm_),
                                                 "; communicator aborted");
      abort();
      throw BackendError(message);
    }
    if (status == cudaSuccess) return;
    if (Clock::now() >= deadline) {
      abort();
      TG_THROW(DistributedError, who(), ": ", what, " did not finish within ", timeout_.count(),
               " ms; communicator aborted (another rank failed, stopped or never joined)");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

NcclCommunicator join_nccl(TcpStore& store, const LaunchEnv& env, std::chrono::milliseconds timeout) {
  NcclUniqueId id{};
  if (env.rank == 0) id = make_nccl_unique_id();
  const Bytes published = broadcast_from_rank0(store, kNcclIdKey, Bytes(id.begin(), id.end()));
  TG_CHECK(published.size() == id.size(), DistributedError, "join_nccl: rank 0 published an NCCL unique id of ",
           published.size(), " bytes; expected ", id.size());
  std::copy(published.begin(), published.end(), id.begin());
  return NcclCommunicator(id, env.rank, env.world_size, env.local_rank, timeout);
}

}  // namespace tg::dist
