// JSON Lines metrics file.
#include "apps/train_vit/metrics.h"

#include "core/allocator.h"
#include "core/error.h"

namespace tg::train {

nlohmann::json memory_fields(Device device) {
  const MemoryStats stats = memory_stats(device);
  const auto all = static_cast<size_t>(StatType::all);
  return {{"allocated_bytes", stats.allocated_bytes[all].current},
          {"peak_allocated_bytes", stats.allocated_bytes[all].peak},
          {"reserved_bytes", stats.reserved_bytes[all].current},
          {"peak_reserved_bytes", stats.reserved_bytes[all].peak},
          // Fragmentation and pressure, for soak runs (scripts/gpu_soak.sh).
          {"inactive_split", stats.inactive_split[all].current},
          {"inactive_split_bytes", stats.inactive_split_bytes[all].current},
          {"num_alloc_retries", stats.num_alloc_retries},
          {"num_ooms", stats.num_ooms}};
}

MetricsWriter::MetricsWriter(const std::string& path, bool append)
    : path_(path), file_(path, append ? std::ios::app : std::ios::trunc) {
  TG_CHECK(file_.is_open(), IoError, "--metrics-out: cannot open '", path, "' for writing");
}

void MetricsWriter::write(const nlohmann::json& record) {
  if (path_.empty()) return;
  // One flushed line per record: a file read while training runs holds only whole records.
  file_ << record.dump() << std::endl;
  TG_CHECK(file_.good(), IoError, "--metrics-out: writing '", path_, "' failed");
}

}  // namespace tg::train
