// Checks that every rank of a job holds the same parameters: at the start (after rank 0's
// broadcast) and after a resume, each rank publishes one record per parameter — name, dtype,
// shape and an FNV-1a 64 checksum of its bytes — and compares everyone's records with rank 0's.
// A host copy of each tensor is hashed: a few hundred ms for ViT-B's 86M parameters, once.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "dist/store.h"

namespace tg::dist {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;  // as nn::Module::named_parameters()

// FNV-1a 64 over the tensor's elements in row-major order (any device; copied to the host).
uint64_t tensor_checksum(const Tensor& tensor);

// "<name> <dtype> <shape> <checksum, 16 hex digits>" per parameter, one per line.
std::string parameter_records(const NamedTensors& parameters);

// Gathers every rank's records under `key` and compares them with rank 0's. DistributedError
// (the same on every rank) naming the first parameter and rank that differ, with both records;
// or the rank whose parameter count differs.
void check_parameters_match(TcpStore& store, const std::string& key, const NamedTensors& parameters);

}  // namespace tg::dist
