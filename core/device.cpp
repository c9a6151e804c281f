// Device parsing/printing and CUDA availability.
#include "core/device.h"

#include "core/error.h"
#if TG_WITH_CUDA
#include "core/cuda/cuda_check.h"
#endif

namespace tg {

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    const std::string digits = text.substr(5);
    TG_CHECK(digits.find_first_not_of("0123456789") == std::string::npos, ValueError,
             "invalid device '", text, "': expected cpu, cuda or cuda:N");
    return cuda(std::stoi(digits));
  }
  TG_THROW(ValueError, "invalid device '", text, "': expected cpu, cuda or cuda:N");
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index);
}

bool built_with_cuda() { return TG_WITH_CUDA != 0; }

int cuda_device_count() {
#if TG_WITH_CUDA
  static const int count = [] {
    int n = 0;
    // No driver or no device is not an error here: it means "no CUDA devices".
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
#else
  return 0;
#endif
}

void check_device_usable(Device device) {
  if (device.is_cpu()) return;
  TG_CHECK(built_with_cuda(), NotImplementedError, "device ", device.str(),
           " requested, but tapegrad was built without CUDA (configure with -DTAPEGRAD_CUDA=ON)");
  const int count = cuda_device_count();
  TG_CHECK(count > 0, ValueError, "device ", device.str(),
           " requested, but no CUDA device is available in this process");
  TG_CHECK(device.index >= 0 && device.index < count, IndexError, "device ", device.str(),
           " requested, but only ", count, " CUDA device(s) exist");
}

}  // namespace tg
