// Printing tensors: a header (shape, dtype, device) and nested values, summarized with "..."
// past `edge_items` entries per dim.
#include <cstdio>
#include <ostream>
#include <sstream>

#include "core/tensor.h"

namespace tg {

namespace {

void print_values(std::ostringstream& out, const Tensor& t, int64_t edge_items, int depth) {
  if (t.dim() == 0) {
    char buffer[32];
    const double v = t.item();
    if (is_floating(t.dtype())) std::snprintf(buffer, sizeof(buffer), "%.6g", v);
    else std::snprintf(buffer, sizeof(buffer), "%lld", static_cast<long long>(v));
    out << buffer;
    return;
  }
  const int64_t n = t.size(0);
  out << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (n > 2 * edge_items && i == edge_items) {
      out << (t.dim() > 1 ? "...,\n" + std::string(static_cast<size_t>(depth + 1), ' ') : "..., ");
      i = n - edge_items;
    }
    print_values(out, t.raw_select(0, i), edge_items, depth + 1);
    if (i + 1 < n) out << (t.dim() > 1 ? ",\n" + std::string(static_cast<size_t>(depth + 1), ' ') : ", ");
  }
  out << ']';
}

}  // namespace

std::string Tensor::str(int64_t edge_items) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream out;
  out << "Tensor(shape=" << shape().str() << ", dtype=" << dtype_name(dtype()) << ", device="
      << device().str() << ")\n";
  const Tensor host = to(Device::cpu());
  print_values(out, host, edge_items, 0);
  return out.str();
}

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) { return out << tensor.str(); }

}  // namespace tg
