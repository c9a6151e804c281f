// Store options of the dist tests: a rank of a localhost job at `port` (0: the system picks one).
#pragma once

#include <chrono>

#include "dist/store.h"

namespace tg::test {

inline dist::StoreOptions store_options(int rank, int world_size, int port,
                                        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  dist::StoreOptions o;
  o.port = port;
  o.rank = rank;
  o.world_size = world_size;
  o.timeout = timeout;
  return o;
}

}  // namespace tg::test
