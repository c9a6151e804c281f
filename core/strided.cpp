// CopyGeometry construction.
#include "core/strided.h"

#include "core/error.h"

namespace tg {

CopyGeometry make_copy_geometry(const Shape& shape, const Strides& dst_strides,
                                const Strides& src_strides) {
  CopyGeometry g;
  for (int64_t d = 0; d < shape.ndim(); ++d) {
    const size_t i = static_cast<size_t>(d);
    if (shape[d] == 1) continue;
    if (g.ndim > 0) {
      const int last = g.ndim - 1;
      if (g.dst_strides[last] == dst_strides[i] * shape[d] &&
          g.src_strides[last] == src_strides[i] * shape[d]) {
        g.sizes[last] *= shape[d];
        g.dst_strides[last] = dst_strides[i];
        g.src_strides[last] = src_strides[i];
        continue;
      }
    }
    TG_CHECK(g.ndim < kMaxCopyDims, NotImplementedError, "copy of a tensor with more than ",
             kMaxCopyDims, " non-mergeable dims (shape ", shape.str(), ")");
    g.sizes[g.ndim] = shape[d];
    g.dst_strides[g.ndim] = dst_strides[i];
    g.src_strides[g.ndim] = src_strides[i];
    ++g.ndim;
  }
  return g;
}

}  // namespace tg
