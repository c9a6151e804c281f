// MemoryStats flattening and the memory_summary() table.
#include "core/memory_stats.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace tg {

namespace {
const char* const kTypeNames[kNumStatTypes] = {"all", "small_pool", "large_pool"};

}  // namespace

std::map<std::string, int64_t> MemoryStats::as_map() const {
  std::map<std::string, int64_t> out;
  for_each_array(*this, [&](const char* name, const StatArray& array) {
    for (int t = 0; t < kNumStatTypes; ++t) {
      const std::string prefix = std::string(name) + "." + kTypeNames[t] + ".";
      const Stat& stat = array[static_cast<size_t>(t)];
      out[prefix + "current"] = stat.current;
      out[prefix + "peak"] = stat.peak;
      out[prefix + "allocated"] = stat.allocated;
      out[prefix + "freed"] = stat.freed;
    }
  });
  out["num_alloc_retries"] = num_alloc_retries;
  out["num_ooms"] = num_ooms;
  out["num_device_alloc"] = num_device_alloc;
  out["num_device_free"] = num_device_free;
  for (const auto& [name, stat] : {std::pair<const char*, const Stat*>{"private_pools", &private_pools},
                                   {"private_pool_reserved_bytes", &private_pool_reserved_bytes}}) {
    out[std::string(name) + ".current"] = stat->current;
    out[std::string(name) + ".peak"] = stat->peak;
  }
  return out;
}

void MemoryStats::reset_peak() {
  for_each_array(*this, [](const char*, StatArray& array) {
    for (Stat& stat : array) stat.reset_peak();
  });
  private_pools.reset_peak();
  private_pool_reserved_bytes.reset_peak();
}

void MemoryStats::reset_accumulated() {
  for_each_array(*this, [](const char*, StatArray& array) {
    for (Stat& stat : array) stat.reset_accumulated();
  });
  num_alloc_retries = num_ooms = num_device_alloc = num_device_free = 0;
  private_pools.reset_accumulated();
  private_pool_reserved_bytes.reset_accumulated();
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (std::abs(value) >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char buffer[48];
  if (unit == 0) std::snprintf(buffer, sizeof(buffer), "%lld B", static_cast<long long>(bytes));
  else std::snprintf(buffer, sizeof(buffer), "%.2f %s", value, units[unit]);
  return buffer;
}

std::string memory_summary(const MemoryStats& s, const std::string& device_name) {
  std::ostringstream out;
  const std::string rule(77, '='), thin(77, '-');
  auto row = [&](const std::string& label, const Stat& stat, bool bytes) {
    auto cell = [&](int64_t v) { return bytes ? format_bytes(v) : std::to_string(v); };
    char line[160];
    std::snprintf(line, sizeof(line), "| %-25s | %10s | %10s | %10s | %10s |\n", label.c_str(),
                  cell(stat.current).c_str(), cell(stat.peak).c_str(), cell(stat.allocated).c_str(),
                  cell(stat.freed).c_str());
    out << line;
  };
  auto section = [&](const std::string& title, const StatArray& array, bool bytes) {
    row(title, array[0], bytes);
    row("      from large pool", array[2], bytes);
    row("      from small pool", array[1], bytes);
    out << '|' << thin << "|\n";
  };
  char header[160];
  out << '|' << rule << "|\n";
  std::snprintf(header, sizeof(header), "| %-75s |\n",
                ("tapegrad memory summary, device " + device_name).c_str());
  out << header << '|' << thin << "|\n";
  std::snprintf(header, sizeof(header), "| OOMs: %-10lld alloc retries: %-10lld device allocs: %-8lld frees: %-6lld|\n",
                static_cast<long long>(s.num_ooms), static_cast<long long>(s.num_alloc_retries),
                static_cast<long long>(s.num_device_alloc), static_cast<long long>(s.num_device_free));
  out << header << '|' << rule << "|\n";
  std::snprintf(header, sizeof(header), "| %-25s | %10s | %10s | %10s | %10s |\n", "Metric",
                "Cur Usage", "Peak Usage", "Tot Alloc", "Tot Freed");
  out << header << '|' << thin << "|\n";
  section("Allocated memory", s.allocated_bytes, true);
  section("Active memory", s.active_bytes, true);
  section("Requested memory", s.requested_bytes, true);
  section("GPU reserved memory", s.reserved_bytes, true);
  section("Non-releasable memory", s.inactive_split_bytes, true);
  section("Allocations", s.allocation, false);
  section("Active allocs", s.active, false);
  section("GPU reserved segments", s.segment, false);
  section("Non-releasable allocs", s.inactive_split, false);
  row("Graph pools", s.private_pools, false);
  row("Graph pool reserved", s.private_pool_reserved_bytes, true);
  out << '|' << rule << "|\n";
  return out.str();
}

}  // namespace tg
