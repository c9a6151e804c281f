// Shape and strides (int64 dims, element strides), with helpers for contiguity, numel and
// dimension wrapping (negative dims count from the end).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace tg {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}

  int64_t ndim() const { return static_cast<int64_t>(dims_.size()); }
  int64_t operator[](int64_t i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t& operator[](int64_t i) { return dims_[static_cast<size_t>(i)]; }
  int64_t numel() const;
  const std::vector<int64_t>& dims() const { return dims_; }
  std::vector<int64_t>& dims() { return dims_; }
  auto begin() const { return dims_.begin(); }
  auto end() const { return dims_.end(); }
  std::string str() const;  // "[2, 3, 4]"

  friend bool operator==(const Shape&, const Shape&) = default;

 private:
  std::vector<int64_t> dims_;
};

using Strides = std::vector<int64_t>;

// Row-major strides (in elements) of a contiguous tensor of `shape`.
Strides contiguous_strides(const Shape& shape);
// True when (shape, strides) addresses memory exactly like a contiguous tensor; size-1 dims
// may have any stride.
bool is_contiguous(const Shape& shape, const Strides& strides);
// Maps dim in [-ndim, ndim) to [0, ndim); IndexError naming `what` otherwise.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* what = "dim");
std::string strides_str(const Strides& strides);

}  // namespace tg
