// The training run of train_vit: setup from Options, the epoch/step loop (cosine schedule with
// warm-up, clipping, logging, evaluation, checkpoints, metrics) and the final summary.
//
// A step makes no host round trip: the loss is accumulated on the device and read only when a
// progress line is printed (every --log-every steps), so the GPU runs ahead of the host.
#pragma once

#include <cstdint>
#include <iosfwd>

#include "apps/train_vit/data_parallel.h"
#include "apps/train_vit/options.h"

namespace tg::train {

struct RunSummary {
  int64_t steps = 0;                // optimizer steps at the end (a resumed run counts the earlier ones)
  double final_test_acc = -1;       // percent
  double best_test_acc = -1;        // percent, over every evaluation including before a resume
  int64_t peak_allocated_bytes = 0;
  int64_t peak_reserved_bytes = 0;
  double wall_seconds = 0;
  double train_img_per_s = 0;       // training images per second of training time (no evaluation)
};

// Runs the training that `options` (resolved by parse_command_line / resolve_options)
// describes, printing the configuration, progress, evaluations and the summary to `out` (rank 0
// of a data-parallel job; the other ranks print nothing). `make_cuda_communicator`: the NCCL
// communicator of data-parallel runs on CUDA (none: such runs are refused).
RunSummary run_training(const Options& options, std::ostream& out, const CommunicatorFactory& make_cuda_communicator = {});

}  // namespace tg::train
