// The parameter records of consistency.h and their comparison across ranks.
#include "dist/consistency.h"

#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace tg::dist {

namespace {

std::vector<std::string> lines_of(const Bytes& bytes) {
  std::vector<std::string> lines;
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

uint64_t tensor_checksum(const Tensor& tensor) {
  const Tensor host = tensor.to(Device::cpu()).raw_contiguous();
  const auto* bytes = static_cast<const uint8_t*>(host.raw_data());
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a 64: offset basis, then xor and multiply by the prime
  for (size_t i = 0; i < host.nbytes(); ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
  return hash;
}

std::string parameter_records(const NamedTensors& parameters) {
  std::string out;
  for (const auto& [name, tensor] : parameters) {
    char checksum[17];
    std::snprintf(checksum, sizeof checksum, "%016llx", static_cast<unsigned long long>(tensor_checksum(tensor)));
    out += name + " " + dtype_name(tensor.dtype()) + " " + tensor.shape().str() + " " + checksum + "\n";
  }
  return out;
}

void check_parameters_match(TcpStore& store, const std::string& key, const NamedTensors& parameters) {
  const std::string mine = parameter_records(parameters);
  const std::vector<Bytes> all = all_gather(store, key, Bytes(mine.begin(), mine.end()));
  const std::vector<std::string> reference = lines_of(all[0]);
  for (size_t rank = 1; rank < all.size(); ++rank) {
    const std::vector<std::string> theirs = lines_of(all[rank]);
    TG_CHECK(theirs.size() == reference.size(), DistributedError, "parameter check '", key, "': rank ", rank, " has ",
             theirs.size(), " parameters, rank 0 has ", reference.size());
    for (size_t i = 0; i < reference.size(); ++i)
      TG_CHECK(theirs[i] == reference[i], DistributedError, "parameter check '", key, "': parameter ", i,
               " differs between rank 0 (", reference[i], ") and rank ", rank, " (", theirs[i],
               "); every rank must hold rank 0's parameters");
  }
}

}  // namespace tg::dist
