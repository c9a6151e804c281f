// A whole ViT training step with sampled strategies on every target, CUDA against the CPU: on
// the operands the CUDA step really sampled, the CUDA and CPU samplers keep the same rows with
// the same weights bit for bit; and both steps give the same gradients up to GEMM rounding.
#include <doctest/doctest.h>

#include "tests/apps/vit_fixture.h"

using namespace tg;

namespace {

const Device kCuda = Device::cuda(0);

StrategyConfig sampled(const std::string& name) {
  StrategyConfig c;
  c.kind = parse_strategy(name);
  c.ratio = 0.5;
  c.seed = 3;
  return c;
}

// A ViT of 17 tokens (attention items of K = 17 sample k = 10; the linears' 4·17 rows sample 34).
vit::VitConfig step_vit() {
  vit::VitConfig c = test::small_vit_config();
  c.dim = 32;
  c.heads = 2;
  return c;
}

// Σ_slots w·g_idxᵀ x_idx for G = the identity of each item: row i of the result is (total
// weight of row i)·x_i, a single product per element, so it is exact on both devices and shows
// which rows were kept with which weights.
std::vector<float> kept_rows(BackwardStrategy& strategy, const Tensor& operand, int64_t period, bool centred) {
  const int64_t batch = operand.size(0), K = operand.size(1);
  std::vector<float> identity(static_cast<size_t>(batch * K * K), 0.0f);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < K; ++i) identity[static_cast<size_t>((b * K + i) * K + i)] = 1.0f;
  const std::unique_ptr<SavedOperand> saved = strategy.save(operand, period, centred);
  return saved->contract(from_vector(identity, {batch, K, K}, operand.device())).to(Device::cpu()).to_vector<float>();
}

}  // namespace

TEST_CASE("whole ViT step, every target sampled: CUDA keeps the CPU's rows and weights bit for bit, same gradients") {
  const vit::VitConfig c = step_vit();
  for (const std::string name : {"wta-crs", "crs"}) {
    CAPTURE(name);
    std::vector<test::VitRun> runs[2];
    std::vector<std::shared_ptr<test::RecordingStrategy>> recorders[2];
    const Device devices[2] = {Device::cpu(), kCuda};
    for (int d = 0; d < 2; ++d) {
      vit::VisionTransformer model(c, devices[d], 1234);
      recorders[d] = test::install_recorders(model, sampled(name));
      const test::VitBatch batch = test::vit_batch(c, devices[d]);
      // Two steps: the second samples with the proxy learned in the first backward.
      for (int step = 0; step < 2; ++step) runs[d].push_back(test::vit_step(model, batch));
    }
    for (int step = 0; step < 2; ++step) {
      CAPTURE(step);
      CHECK(std::abs(runs[1][step].loss - runs[0][step].loss) / std::abs(runs[0][step].loss) < 1e-5);
      for (size_t p = 0; p < runs[0][step].grads.size(); ++p) {
        CAPTURE(runs[0][step].grads[p].first);
        CHECK(test::relative_error(runs[1][step].grads[p].second, runs[0][step].grads[p].second) < 1e-4);
      }
    }
    // Replay every save of the CUDA step through fresh strategies (same config, node id and
    // state) on the CUDA operand and on its CPU copy.
    int64_t saves = 0, mismatched = 0;
    for (size_t r = 0; r < recorders[1].size(); ++r) {
      const auto& calls = recorders[1][r]->calls;
      REQUIRE(calls.size() == recorders[0][r]->calls.size());
      for (const test::RecordingStrategy::SaveCall& call : calls) {
        std::vector<float> kept[2];
        for (int d = 0; d < 2; ++d) {
          const std::shared_ptr<BackwardStrategy> twin = make_strategy(sampled(name), r);
          twin->load_state_dict(call.state);
          kept[d] = kept_rows(*twin, call.operand.to(devices[d]), call.period, call.gradient_rows_sum_to_zero);
        }
        ++saves;
        mismatched += kept[0] != kept[1];
      }
    }
    MESSAGE(name, ": ", saves, " sampled saves replayed");
    CHECK(saves >= 2 * static_cast<int64_t>(recorders[1].size()));  // every target saves in each step
    CHECK(mismatched == 0);
    // The strategies end in the same state: step counters exactly, proxies up to rounding.
    for (size_t r = 0; r < recorders[1].size(); ++r) {
      const auto cpu_state = recorders[0][r]->inner->state_dict(), cuda_state = recorders[1][r]->inner->state_dict();
      CHECK(cuda_state.at("step").to_vector<int64_t>() == cpu_state.at("step").to_vector<int64_t>());
      CHECK(test::relative_error(test::host_values(cuda_state.at("proxy")), test::host_values(cpu_state.at("proxy"))) < 1e-5);
    }
  }
}
