// The data-parallel side of a train_vit run (docs/distributed.md): the store and the join, the
// communicator of the run's device, the parameters made equal and checked at the start and
// after a resume, the gradient reducer that averages the buckets from backward's hooks, and the
// few reductions of the loop (the logged loss, the evaluation counts, the memory peaks). The
// Trainer holds one only when WORLD_SIZE > 1; every rank calls the same members in the same
// order, so the collectives of all ranks match.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/train_vit/options.h"
#include "apps/vit/vit.h"
#include "dist/communicator.h"
#include "dist/grad_reducer.h"
#include "dist/store.h"
#include "nn/optim.h"

namespace tg::train {

// Makes the communicator of a data-parallel run on CUDA (main passes dist::open_nccl_communicator
// in builds with NCCL, so that only train_vit itself links libnccl).
using CommunicatorFactory = std::function<std::unique_ptr<dist::Communicator>(
    dist::TcpStore& store, const dist::LaunchEnv& env, std::chrono::milliseconds timeout)>;

class DataParallel {
 public:
  // Serves (rank 0) or joins the store at MASTER_ADDR:MASTER_PORT, runs the join (dist/
  // rendezvous.h: a rank that does not arrive within --dist-timeout is named) and opens the
  // communicator: the StoreCommunicator on the CPU, `make_cuda` on CUDA (NotImplementedError
  // when empty).
  DataParallel(const Options& options, const CommunicatorFactory& make_cuda);

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }

  // A fresh run: every parameter becomes rank 0's (broadcast), then the ranks' parameters are
  // compared (dist/consistency.h, key "start"). A resumed run (`resumed_step`): each rank loaded
  // the checkpoint itself, so its parameters and optimizer state are compared as loaded (key
  // "resume at step N"), with no broadcast that would hide a rank reading another checkpoint.
  // DistributedError naming the first difference.
  void share_parameters(const vit::VisionTransformer& model, const nn::Optimizer& optimizer,
                        std::optional<int64_t> resumed_step);
  // Installs the gradient reducer on the model's parameters (dist/grad_reducer.h).
  void reduce_gradients(const vit::VisionTransformer& model);
  // The end of backward: every gradient got, the later work ordered after the averages.
  void finish_backward() { reducer_->finish_backward(); }
  // Blocks until the queued collectives have completed, at most --dist-timeout.
  void synchronize(const std::string& what) { comm_->synchronize(what); }
  // In place and queued: the average of `tensor` over the ranks.
  void average(const Tensor& tensor) { comm_->all_reduce(tensor, dist::ReduceOp::average); }
  // The sums over the ranks of `values` (in f64; synchronized; `what` names them in a timeout).
  std::vector<double> sum(const std::vector<double>& values, const std::string& what);
  // Every rank's `values`, in rank order (through the store: for reports, not for the step).
  std::vector<std::vector<int64_t>> gather(const std::string& key, const std::vector<int64_t>& values);
  // Every rank's (small) tensors, in rank order, on the host (through the store: the sampled
  // strategies' per-rank state for rank 0's checkpoint).
  std::vector<std::map<std::string, Tensor>> gather_tensors(const std::string& key,
                                                            const std::map<std::string, Tensor>& tensors);
  // The end of a successful run: the other ranks tell rank 0 they are done with the store, and
  // rank 0 waits for that before its store (which they all use) goes away with the process.
  void finish();

 private:
  dist::LaunchEnv env_;
  std::unique_ptr<dist::TcpStore> store_;
  std::unique_ptr<dist::Communicator> comm_;
  std::unique_ptr<dist::GradientReducer> reducer_;
};

}  // namespace tg::train
