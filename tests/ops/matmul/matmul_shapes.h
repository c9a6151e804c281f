// Shapes shared by the matmul tests (CPU and CUDA).
#pragma once

#include <vector>

#include "core/shape.h"

namespace tg::test {

// [..batch, rows, cols] of an operand, with rows and cols swapped when it is passed transposed.
inline Shape operand_shape(std::vector<int64_t> batch, int64_t rows, int64_t cols, bool trans) {
  batch.push_back(trans ? cols : rows);
  batch.push_back(trans ? rows : cols);
  return Shape(batch);
}

}  // namespace tg::test
