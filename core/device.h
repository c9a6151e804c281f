// Device (cpu, cuda:N): parsing, printing, and whether CUDA is usable in this process.
#pragma once

#include <cstdint>
#include <string>

namespace tg {

enum class DeviceKind : uint8_t { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;

  static constexpr Device cpu() { return {DeviceKind::cpu, 0}; }
  static constexpr Device cuda(int index = 0) { return {DeviceKind::cuda, index}; }
  static Device parse(const std::string& text);  // "cpu", "cuda", "cuda:1"; ValueError otherwise

  bool is_cpu() const { return kind == DeviceKind::cpu; }
  bool is_cuda() const { return kind == DeviceKind::cuda; }
  std::string str() const;
  friend bool operator==(const Device&, const Device&) = default;
};

// True when tapegrad was compiled with its CUDA backend.
bool built_with_cuda();
// Number of usable CUDA devices (0 when built without CUDA or when no GPU/driver is present).
int cuda_device_count();
inline bool cuda_is_available() { return cuda_device_count() > 0; }
// Throws a clear error unless `device` can be used (built with CUDA, index in range).
void check_device_usable(Device device);

}  // namespace tg
