// --metrics-out: one JSON object per line, for plotting. The first record ("type": "config")
// holds the options and the sampled slots as installed ("sampled": [{block, slot, strategy}]).
// Training records ("type": "train") are written with each progress line, evaluation records ("type": "eval") after each
// evaluation; both carry epoch, step, loss, lr, img_per_s, allocated_bytes,
// peak_allocated_bytes, reserved_bytes, peak_reserved_bytes, inactive_split(_bytes),
// num_alloc_retries, num_ooms and elapsed_s, evaluations also test_acc (percent) and weights
// ("model", or "ema" with --model-ema).
#pragma once

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/device.h"

namespace tg::train {

// The memory fields of a record, from the device's allocator now.
nlohmann::json memory_fields(Device device);

class MetricsWriter {
 public:
  MetricsWriter() = default;  // writes nothing
  // Truncates `path`, or appends to it (a resumed run continues its file).
  MetricsWriter(const std::string& path, bool append);
  void write(const nlohmann::json& record);

 private:
  std::string path_;
  std::ofstream file_;
};

}  // namespace tg::train
