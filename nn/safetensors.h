// safetensors files (the format of Hugging Face's safetensors library): an 8-byte little-endian
// header length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]},
// "__metadata__": {string: string}}, then the raw little-endian tensor bytes. Compatible both
// ways with torch/timm checkpoints saved through safetensors.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace tg::nn {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;          // on the CPU
  std::map<std::string, std::string> metadata;
};

// Writes `tensors` (any device; copied to the host) and `metadata` to `path`.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Reads a file; IoError naming the file and the problem for anything malformed.
SafetensorsFile load_safetensors(const std::string& path);

}  // namespace tg::nn
