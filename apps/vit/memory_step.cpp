// The whole training step of the memory model's replay (StepReplay::run: parameters, data,
// patch embedding, the blocks, head and loss, backward, the optimizer) and predict_memory.
#include "apps/vit/memory_model.h"
#include "apps/vit/memory_replay.h"

namespace tg::vit {

namespace detail {

// apps/train_vit's step_body: forward (VisionTransformer::forward), cross entropy, backward,
// clipping, the optimizer's update, zero_grad.
MemoryPrediction StepReplay::run() {
  const bool cast = s_.autocast_bf16;
  // Alive before the step: parameters, optimizer state (after the first step), the sampled
  // strategies' proxies and step counters, resident data, the batch.
  const std::vector<int64_t> params = parameter_sizes();
  r_.at("start of step", -1, "");
  for (int64_t n : params) r_.persistent(n * 4, K::parameters);
  const int64_t moments = optimizer_moments();
  r_.persistent(4 * 8, K::optimizer_state);  // the optimizer's step scalars, [4] f64
  if (s_.steady_state)
    for (int64_t m = 0; m < moments; ++m)
      for (int64_t n : params) r_.persistent(n * 4, K::optimizer_state);
  for (const BlockPlan& p : plan_.blocks)
    for (size_t t = 0; t < kPlanTargets.size(); ++t)
      if (p.sampled(t)) {
        r_.persistent(T_ * 4, K::optimizer_state);  // proxy, f32 [T]
        r_.persistent(8, K::optimizer_state);       // step, i64 [1]
      }
  r_.persistent(s_.resident_bytes, K::data);
  r_.persistent(B_ * c_.in_channels * c_.image_size * c_.image_size * 4, K::data);
  r_.persistent(B_ * 8, K::data);
  const int64_t start_bytes = r_.result().peak_bytes;

  // The step's AutocastWeightCache: bf16 copies of the patch embedding's, the head's and every
  // non-checkpointed block's linears' parameters, made before forward, alive until backward ends.
  if (s_.autocast_bf16 && s_.weight_cache) {
    r_.at("start of step", -1, "weight cache");
    auto cache = [&](int64_t block, int64_t slot, int64_t out, int64_t in) {
      const Id w = r_.alloc(out * in * 2, K::weight_copies), bias = r_.alloc(out * 2, K::weight_copies);
      cache_[{block, slot}] = {bias, w};
    };
    cache(kPatch, kPatch, D_, P_);
    for (int64_t b = 0; b < c_.depth; ++b)
      if (!plan_.blocks[static_cast<size_t>(b)].checkpoint) {
        cache(b, 0, 3 * D_, D_);
        cache(b, 1, D_, D_);
        cache(b, 2, Hd_, D_);
        cache(b, 3, D_, Hd_);
      }
    cache(kHead, kHead, C_, D_);
  }
  // Patch embedding: the patches are a copy (a reshape of a permuted view), local to forward.
  r_.at("forward", -1, "patch embedding");
  const Id patches = r_.alloc(B_ * Np_ * P_ * 4, cast || copy_on_save_ ? K::transient_forward : K::embed_head);
  const Id patches_cast = cast ? r_.alloc(B_ * Np_ * P_ * 2, K::embed_head) : kNone;
  const auto [bias_copy, weight_copy] = parameter_copies(kPatch, D_, P_, false);  // x needs no grad: not kept
  const Id embedded = r_.alloc(B_ * Np_ * D_ * a_, K::transient_forward);
  const SavedOperand patch_saved = save_operand(cast ? patches_cast : patches, B_ * Np_, P_, K::embed_head, 0);
  r_.unref(weight_copy);
  r_.unref(bias_copy);
  r_.unref(patches_cast);
  const Id embedded_f32 = cast ? r_.alloc(B_ * Np_ * D_ * 4, K::transient_forward) : kNone;
  const Id joined = r_.alloc(N_ * D_ * 4, K::transient_forward);  // concat with the class token
  Id x = r_.alloc(N_ * D_ * 4, K::block_input);                   // + pos_embed
  r_.assign(x, 0);
  r_.unref(joined);
  r_.unref(embedded_f32);

  std::vector<BlockKeep> keep(static_cast<size_t>(c_.depth));
  for (int64_t b = 0; b < c_.depth; ++b) {
    BlockKeep& k = keep[static_cast<size_t>(b)];
    Id out;
    if (plan_.blocks[static_cast<size_t>(b)].checkpoint) {
      k.checkpoint_input = r_.share(x);  // tg::checkpoint keeps the input only
      BlockKeep unused;
      out = block_forward(b, x, false, unused);
    } else {
      out = block_forward(b, x, true, k);
    }
    r_.unref(x);
    x = out;
  }
  // Final norm on the class token (keeps the whole last output: a select is a view), head.
  r_.at("forward", -1, "norm, head and loss");
  const Id norm_y = r_.alloc(B_ * D_ * a_, K::embed_head);
  const Id norm_mean = r_.alloc(B_ * 4, K::embed_head), norm_rstd = r_.alloc(B_ * 4, K::embed_head);
  const Id final_x = r_.share(x);
  SavedOperand head_saved;
  Id head_weight = kNone;
  const Id head_out = linear(kHead, norm_y, B_, D_, C_, K::embed_head, 0, true, head_saved, head_weight, K::embed_head);
  const Id logits = cast ? r_.alloc(B_ * C_ * 4, K::embed_head) : head_out;
  if (cast) r_.unref(head_out);
  r_.unref(norm_y);
  r_.unref(patches);  // forward's locals
  r_.unref(embedded);
  r_.unref(x);
  // cross_entropy keeps the logits and the row log-sum-exp; the row losses die in the mean.
  const Id row_loss = r_.alloc(B_ * 4, K::transient_forward), lse = r_.alloc(B_ * 4, K::embed_head);
  const Id loss = r_.alloc(4, K::embed_head);
  r_.unref(row_loss);
  MemoryPrediction after_forward;
  r_.snapshot(c_.depth, after_forward);

  r_.at("backward", -1, "loss, head and norm");
  const Id root = grad(4);
  const Id g_logits = grad(B_ * C_ * 4);
  r_.unref(logits);
  r_.unref(lse);
  r_.unref(root);
  const Id g_head_out = cast ? grad(B_ * C_ * 2) : g_logits;
  if (cast) r_.unref(g_logits);
  const Id g_norm_y = grad(B_ * D_ * a_);
  const Id head_w = weight_gradient(head_saved, B_, D_, C_), head_b = grad(C_ * g_);
  r_.unref(head_weight);
  release(head_saved);
  r_.unref(g_head_out);
  parameter_gradients(head_w, C_ * D_, head_b, C_);
  const Id g_token = grad(B_ * D_ * 4), gn_w = grad(D_ * 4), gn_b = grad(D_ * 4);
  norm_gradients(gn_w, gn_b);
  r_.unref(final_x);
  r_.unref(norm_mean);
  r_.unref(norm_rstd);
  r_.unref(g_norm_y);
  Id g = grad(N_ * D_ * 4);  // select's backward: zeros of [B, T, D] with the class token's rows
  r_.unref(g_token);

  for (int64_t b = c_.depth - 1; b >= 0; --b) {
    BlockKeep& k = keep[static_cast<size_t>(b)];
    if (!plan_.blocks[static_cast<size_t>(b)].checkpoint) {
      g = block_backward(b, g, false, k);
      continue;
    }
    // CheckpointBackward::apply (autograd/checkpoint.cpp): the rerun with recording, whose
    // output lives to the end of apply, and a nested backward from the outer gradient.
    rerun_ = true;
    const Id leaf = r_.share(k.checkpoint_input);
    BlockKeep rerun;
    const Id out = block_forward(b, leaf, true, rerun);
    rerun_ = false;
    const Id nested = r_.share(g);
    const Id g_in = block_backward(b, nested, true, rerun);
    r_.unref(out);
    r_.unref(leaf);
    r_.unref(k.checkpoint_input);
    r_.unref(g);
    g = g_in;
  }
  // x0 = concat(cls, embedded) + pos_embed: pos_embed's and cls_token's sums, then the patch
  // linear's weight gradient from the embedded part of g (a strided view: a copy of its rows in
  // f32; under autocast the cast's backward makes the bf16 copy and g is gone before the GEMM).
  r_.at("backward", -1, "patch embedding");
  store_gradient(r_.alloc(T_ * D_ * 4, K::gradients), T_ * D_ * 4);
  store_gradient(r_.alloc(D_ * 4, K::gradients), D_ * 4);
  const Id g_embedded = grad(B_ * Np_ * D_ * a_);
  if (cast) r_.unref(g);
  const Id patch_w = weight_gradient(patch_saved, B_ * Np_, P_, D_), patch_b = grad(D_ * g_);
  release(patch_saved);
  r_.unref(g_embedded);
  if (!cast) r_.unref(g);
  parameter_gradients(patch_w, D_ * P_, patch_b, D_);

  for (const auto& [slot, copies] : cache_) {  // the cache's scope ends with backward
    r_.unref(copies.first);
    r_.unref(copies.second);
  }
  r_.at("optimizer", -1, s_.steady_state ? "update" : "update (creating the state)");
  if (s_.clip_grad) {
    const Id norm = r_.alloc(4, K::transient_gradients), coef = r_.alloc(4, K::transient_gradients);
    r_.unref(norm);
    r_.unref(coef);
  }
  if (!s_.steady_state && !s_.optimizer_in_backward)  // in backward: created by the hooks
    for (int64_t m = 0; m < moments; ++m)
      for (int64_t n : params) r_.alloc(n * 4, K::optimizer_state);
  for (Id grad_id : grads_) r_.unref(grad_id);  // zero_grad (none left with the optimizer in backward)
  r_.unref(loss);
  MemoryPrediction p = r_.result();
  p.after_forward = std::move(after_forward.after_forward);
  p.after_forward_total = after_forward.after_forward_total;
  p.start_bytes = start_bytes;
  return p;
}


}  // namespace detail

using detail::AddressBacking;
using detail::StepReplay;


MemoryPrediction predict_memory(const StepSetup& setup, const MemoryPlan& plan, AllocatorModel allocator) {
  TG_CHECK(setup.config.fused_attention, NotImplementedError,
           "the memory model covers the fused attention only (the explicit attention's matmul nodes and [T, T] "
           "probabilities are not modelled); use --attention fused");
  TG_CHECK(setup.batch > 0, ValueError, "memory model: expected a positive batch, got ", setup.batch);
  check_plan(plan, setup.config);
  if (allocator == AllocatorModel::rounding) return StepReplay(setup, plan).run();
  // The allocator's own block sizes: the first step (which creates the optimizer state) leaves
  // the cache as a real run does, then the measured step replays on it.
  CachingAllocator cache(std::make_unique<AddressBacking>());
  StepSetup first = setup;
  first.steady_state = false;
  MemoryPrediction first_step = StepReplay(first, plan, &cache).run();
  if (!setup.steady_state) return first_step;
  cache.reset_peak_stats();
  return StepReplay(setup, plan, &cache, /*persistent_cached=*/true).run();
}

}  // namespace tg::vit
