// StoreCommunicator: the Communicator (dist/communicator.h) of CPU tensors, carried by the job's
// TcpStore (gloo's role, at toy speed): every collective is an exchange of byte blobs through
// rank 0's store. It serves data-parallel runs on the CPU and the CI tests of the trainer.
//
// Collective number s publishes each rank's bytes under "tapegrad/collective/<s>/<rank>" and
// reads every rank's (dist/store.h, all_gather; broadcast: the root's bytes, the others an
// empty blob). The reduction is computed on every rank from the same bytes in the same order —
// rank 0's values, then + rank 1's, + rank 2's, ... in the tensor's dtype, then / world size for
// an average — so every rank gets the same result, bit for bit, run after run. Having published
// collective s, a rank has read everything of s - 1, so once s completes each rank erases its
// own key of s - 1 and the store holds at most two collectives. Tensors above 16 MiB travel in
// 16 MiB pieces (the store's frames stop at 64 MiB).
//
// Everything is synchronous: a collective has completed when it returns, so wait() and
// synchronize() only check that the communicator was not aborted. A rank that does not publish
// within the store's timeout is named: "CPU communicator rank 0 of 2: all_reduce of collective 7
// (4096 f32): TcpStore: rank 0 waited 300000 ms for 'tapegrad/collective/7' from all 2 ranks;
// missing rank(s): 1".
#pragma once

#include <cstdint>
#include <string>

#include "dist/communicator.h"
#include "dist/store.h"

namespace tg::dist {

class StoreCommunicator final : public Communicator {
 public:
  // Collectives of `store`'s rank over its world size (the store must outlive this object).
  explicit StoreCommunicator(TcpStore& store);

  int rank() const override { return store_.rank(); }
  int world_size() const override { return store_.world_size(); }
  Device device() const override { return Device::cpu(); }

  // f32 and f64 (sum or average), i32 and i64 (sum); TypeError / ValueError for other tensors.
  void all_reduce(const Tensor& tensor, ReduceOp op) override;
  void broadcast(const Tensor& tensor, int root) override;
  void wait() override;
  void synchronize(const std::string& what) override;
  void abort() override { aborted_ = true; }

 private:
  // One collective of `mine`: every rank's blob, in rank order. `what` names it in errors.
  std::vector<Bytes> exchange(const Bytes& mine, const std::string& what);
  void check_tensor(const Tensor& tensor, const char* op) const;
  std::string who() const;

  TcpStore& store_;
  int64_t sequence_ = 0;  // collectives issued so far
  bool aborted_ = false;
};

}  // namespace tg::dist
