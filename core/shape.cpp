// Shape/stride helpers.
#include "core/shape.h"

#include <sstream>

#include <algorithm>

#include "core/error.h"

namespace tg {

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : dims_) n *= d;
  return n;
}

static std::string join(const std::vector<int64_t>& values) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << values[i];
  out << ']';
  return out.str();
}

std::string Shape::str() const { return join(dims_); }
std::string strides_str(const Strides& strides) { return join(strides); }

Strides contiguous_strides(const Shape& shape) {
  Strides strides(static_cast<size_t>(shape.ndim()));
  int64_t running = 1;
  for (int64_t i = shape.ndim() - 1; i >= 0; --i) {
    strides[static_cast<size_t>(i)] = running;
    running *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

bool is_contiguous(const Shape& shape, const Strides& strides) {
  int64_t expected = 1;
  for (int64_t i = shape.ndim() - 1; i >= 0; --i) {
    const int64_t size = shape[i];
    if (size == 0) return true;
    if (size != 1 && strides[static_cast<size_t>(i)] != expected) return false;
    expected *= size;
  }
  return true;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* what) {
  const int64_t lo = -std::max<int64_t>(ndim, 1), hi = std::max<int64_t>(ndim, 1) - 1;
  TG_CHECK(dim >= lo && dim <= hi, IndexError, what, " ", dim, " is out of range for a tensor with ",
           ndim, " dimension(s): expected a value in [", lo, ", ", hi, "]");
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

}  // namespace tg
