// The memory model of a ViT training step (docs/memory-planning.md): for a model, batch,
// precision policy, optimizer and per-block plan, the peak of allocated bytes as the caching
// allocator counts them (core/caching_allocator.h: each request rounded up to 512 B), and where
// the bytes are at that moment. Nothing is run: the step is replayed as a list of allocations
// and frees, op by op in the order the code performs them — which tensors each backward node
// keeps and in which dtype (ops/layer_norm.cpp, ops/attention.cpp, ops/matmul/*.cpp,
// autograd/checkpoint.cpp), when the engine frees them and the gradients (autograd/engine.cpp),
// and when the optimizer and the loader hold theirs. The replay is device-independent; the
// same allocator and statistics serve the CPU and CUDA.
//
// Also a relative step-time model (FLOPs of each technique's extra work against the exact
// step's) that the planner minimises; train_vit turns it into seconds with a measured step.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "apps/vit/plan.h"
#include "apps/vit/vit.h"
#include "core/dtype.h"

namespace tg::vit {

// Everything the model needs besides the plan.
struct StepSetup {
  VitConfig config;                   // the model (fused attention only: see predict_memory)
  int64_t batch = 64;
  bool autocast_bf16 = false;         // --precision bf16 (mixed precision); fp32 and tf32 keep f32
  std::optional<DType> saved_dtype;   // --saved-dtype bf16: what matmul nodes keep
  std::string optimizer = "adamw";    // adam | adamw (two state tensors per parameter) | sgd (one)
  bool clip_grad = true;              // --clip-grad > 0
  // --optimizer-in-backward: each parameter's update runs when its gradient reaches
  // AccumulateGrad (creating its state there in the first step), and the gradient is freed then.
  bool optimizer_in_backward = false;
  // Allocated on the step's device outside the step, besides parameters and optimizer state:
  // the loaders' datasets (train_vit keeps them on the device). The batch is counted apart.
  int64_t resident_bytes = 0;
  // Optimizer state already exists (every step after the first); false: the first step, which
  // creates it in the update.
  bool steady_state = true;
  // Mixed precision as the linear-family ops run it. f32_weight_gradients: they return the f32
  // parameters' gradients in f32 straight from the GEMM (else in bf16, cast by the autocast
  // casts' backward). weight_cache: the step holds an AutocastWeightCache (bf16 copies of the
  // patch embedding's, head's and non-checkpointed blocks' linear parameters, made before forward
  // and alive until backward ends) instead of each op converting its own.
  bool f32_weight_gradients = true;  // the linear ops since 0813014
  bool weight_cache = true;           // train_vit's and bench_vit's step since 1e61b55
};

// What is live, by kind. Activation kinds are what the backward nodes keep.
enum class MemoryKind {
  parameters,
  gradients,
  optimizer_state,  // moments (and the step scalars), plus the sampled strategies' proxies
  data,             // the batch (and resident datasets)
  block_input,      // residual stream kept by LayerNorm or a checkpoint: block inputs and h
  norm_stats,       // LayerNorm mean and rstd
  norm_output,      // LayerNorm outputs kept by qkv and fc1 (or their saved-dtype copies)
  qkv,              // q, k, v kept by the fused attention
  attention_output, // attention output O (also proj's input) and its log-sum-exp
  mlp_hidden,       // fc1's output, kept by GELU
  gelu_output,      // GELU's output, fc2's input
  sampled_rows,     // WTA-CRS rows, indices and weights
  weight_copies,    // bf16 casts of the weights that the linears keep for dX
  embed_head,       // patch-embedding input, final norm, head and loss
  transient_forward,   // temporaries of forward (casts, LN outputs before their use, ...)
  transient_gradients, // activation gradients in flight in backward
  transient_recompute, // what backward recomputes (checkpoint reruns, norms, fc1 output)
  count
};
const char* memory_kind_name(MemoryKind kind);

struct MemoryPrediction {
  int64_t peak_bytes = 0;
  std::array<int64_t, static_cast<size_t>(MemoryKind::count)> at_peak{};  // bytes live at the peak
  std::string peak_moment;  // "backward, block 11: fc2", ...
  // What is live when the forward has ended (loss computed, backward not begun) by block (the
  // last row: outside the blocks) and kind, each storage once; and the sum. The memory report
  // compares the sum with the allocator's count at that moment.
  std::vector<std::array<int64_t, static_cast<size_t>(MemoryKind::count)>> after_forward;
  int64_t after_forward_total = 0;
  int64_t start_bytes = 0;  // live when the step starts: parameters, state, data
  int64_t bytes(MemoryKind kind) const { return at_peak[static_cast<size_t>(kind)]; }
  int64_t activation_bytes() const;  // every kind from block_input to embed_head
  int64_t transient_bytes() const;
};

// How block sizes are found. rounding: each request's own rounded size (512 B; from 10 MiB a
// fresh segment's 2 MiB rounding) — fast, for the planner's search. caching: the requests of a
// first step and then of the predicted step go through a real CachingAllocator on an address-only
// backing, so a cached block reused without a split counts whole, as in a run (docs/memory.md).
enum class AllocatorModel { rounding, caching };

// The peak of one training step (forward, loss, backward, clipping, optimizer update) with
// `plan`. ValueError for a plan that does not fit the model; NotImplementedError for the
// explicit attention, which the model does not cover.
MemoryPrediction predict_memory(const StepSetup& setup, const MemoryPlan& plan,
                                AllocatorModel allocator = AllocatorModel::caching);

// A breakdown table of the prediction: parameters, gradients, optimizer state, activations by
// kind, transient, data, and the moment of the peak.
std::string format_prediction(const MemoryPrediction& prediction);

// Relative step time of `plan`: 1 for the exact step, plus each technique's extra work as a
// fraction of it, from FLOP counts (checkpoint: a block forward; GELU recomputation: fc1's GEMM;
// norm recomputation: two LayerNorm passes, counted as kNormPassCost GEMM-FLOP equivalents per
// element) and, for WTA-CRS, a weight-gradient GEMM shrunk by the ratio plus a fixed sampler
// overhead per sampled linear (kSamplerOverhead of that linear's exact step share).
double relative_step_time(const StepSetup& setup, const MemoryPlan& plan);

// The bytes of the batch (f32 images, i64 labels) as the allocator counts them.
int64_t batch_bytes(const VitConfig& config, int64_t batch);

}  // namespace tg::vit
