// StoreCommunicator (store_communicator.h): collectives as blob exchanges through the TcpStore,
// reduced on every rank in rank order.
#include "dist/store_communicator.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace tg::dist {

namespace {

constexpr const char* kCollectivePrefix = "tapegrad/collective";
constexpr size_t kPieceBytes = size_t{16} << 20;

// An empty tensor is one empty piece: every rank still takes part in the collective.
size_t piece_count(size_t bytes) { return std::max<size_t>(1, (bytes + kPieceBytes - 1) / kPieceBytes); }

std::string collective_key(int64_t sequence) { return std::string(kCollectivePrefix) + "/" + std::to_string(sequence); }

// out = blobs[0] + blobs[1] + ... (in rank order, in T), then / world size for an average.
template <class T>
void reduce_in_rank_order(const std::vector<Bytes>& blobs, void* out, int64_t count, ReduceOp op) {
  if (count == 0) return;
  auto* dst = static_cast<T*>(out);
  std::memcpy(dst, blobs[0].data(), static_cast<size_t>(count) * sizeof(T));
  for (size_t r = 1; r < blobs.size(); ++r) {
    const auto* src = reinterpret_cast<const T*>(blobs[r].data());
    for (int64_t i = 0; i < count; ++i) dst[i] += src[i];
  }
  if (op == ReduceOp::average) {
    const auto ranks = static_cast<T>(blobs.size());
    for (int64_t i = 0; i < count; ++i) dst[i] /= ranks;
  }
}

}  // namespace

StoreCommunicator::StoreCommunicator(TcpStore& store) : store_(store) {}

std::string StoreCommunicator::who() const {
  return detail::concat("CPU communicator rank ", rank(), " of ", world_size());
}

void StoreCommunicator::check_tensor(const Tensor& tensor, const char* op) const {
  TG_CHECK(!aborted_, DistributedError, who(), ": ", op, " on an aborted communicator");
  TG_CHECK(tensor.device().is_cpu(), TypeError, who(), ": ", op, " expects a tensor on cpu, got one on ",
           tensor.device().str());
  TG_CHECK(tensor.is_contiguous(), ValueError, who(), ": ", op, " expects a contiguous tensor, got shape ",
           tensor.shape().str(), " with strides that are not contiguous");
}

std::vector<Bytes> StoreCommunicator::exchange(const Bytes& mine, const std::string& what) {
  const int64_t sequence = sequence_++;
  std::vector<Bytes> all;
  try {
    all = all_gather(store_, collective_key(sequence), mine);
    // Everyone has published `sequence`, so everyone has read `sequence - 1`.
    if (sequence > 0) store_.erase(collective_key(sequence - 1) + "/" + std::to_string(rank()));
  } catch (const Error& e) {
    aborted_ = true;  // the ranks' collectives no longer match
    rethrow_with_prefix(e, detail::concat(who(), ": ", what, " of collective ", sequence, ": "));
  }
  return all;
}

void StoreCommunicator::all_reduce(const Tensor& tensor, ReduceOp op) {
  check_tensor(tensor, "all_reduce");
  const DType dtype = tensor.dtype();
  TG_CHECK(dtype == DType::f32 || dtype == DType::f64 || (op == ReduceOp::sum && (dtype == DType::i32 || dtype == DType::i64)),
           TypeError, who(), ": all_reduce ", op == ReduceOp::sum ? "sum" : "average", " expects ",
           op == ReduceOp::sum ? "f32, f64, i32 or i64" : "a floating dtype (f32, f64)", ", got ", dtype_name(dtype));
  auto* base = static_cast<uint8_t*>(tensor.raw_data());
  const size_t item = tensor.itemsize(), total = tensor.nbytes();
  for (size_t piece = 0; piece < piece_count(total); ++piece) {
    const size_t start = piece * kPieceBytes, bytes = std::min(kPieceBytes, total - start);
    const auto count = static_cast<int64_t>(bytes / item);
    const std::vector<Bytes> all = exchange(Bytes(base + start, base + start + bytes),
                                            detail::concat("all_reduce (", count, " ", dtype_name(dtype), ")"));
    for (size_t r = 0; r < all.size(); ++r)
      TG_CHECK(all[r].size() == bytes, DistributedError, who(), ": all_reduce: rank ", r, " sent ", all[r].size(),
               " bytes where this rank sent ", bytes, " (the ranks' collectives do not match)");
    switch (dtype) {
      case DType::f32: reduce_in_rank_order<float>(all, base + start, count, op); break;
      case DType::f64: reduce_in_rank_order<double>(all, base + start, count, op); break;
      case DType::i32: reduce_in_rank_order<int32_t>(all, base + start, count, op); break;
      default: reduce_in_rank_order<int64_t>(all, base + start, count, op); break;
    }
  }
}

void StoreCommunicator::broadcast(const Tensor& tensor, int root) {
  check_tensor(tensor, "broadcast");
  TG_CHECK(root >= 0 && root < world_size(), ValueError, who(), ": broadcast root must be in [0, ", world_size(),
           "), got ", root);
  auto* base = static_cast<uint8_t*>(tensor.raw_data());
  const size_t total = tensor.nbytes();
  for (size_t piece = 0; piece < piece_count(total); ++piece) {
    const size_t start = piece * kPieceBytes, bytes = std::min(kPieceBytes, total - start);
    const Bytes mine = rank() == root ? Bytes(base + start, base + start + bytes) : Bytes();
    const std::vector<Bytes> all =
        exchange(mine, detail::concat("broadcast from rank ", root, " (", bytes, " bytes)"));
    const Bytes& theirs = all[static_cast<size_t>(root)];
    TG_CHECK(theirs.size() == bytes, DistributedError, who(), ": broadcast: rank ", root, " sent ", theirs.size(),
             " bytes where this rank expected ", bytes, " (the ranks' collectives do not match)");
    if (rank() != root && bytes > 0) std::memcpy(base + start, theirs.data(), bytes);
  }
}

void StoreCommunicator::wait() {
  TG_CHECK(!aborted_, DistributedError, who(), ": wait on an aborted communicator");
}

void StoreCommunicator::synchronize(const std::string& what) {
  TG_CHECK(!aborted_, DistributedError, who(), ": synchronize (", what, ") on an aborted communicator");
}

}  // namespace tg::dist
