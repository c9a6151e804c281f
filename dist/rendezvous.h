// The start of a data-parallel job, after every rank has parsed its launcher environment and
// opened the store (docs/distributed.md, "Rendezvous"):
//   1. join: every rank publishes "tapegrad/join/<rank>" = its host name and LOCAL_RANK and
//      reads everyone's; a rank that does not arrive within the store's timeout is named in
//      the error, and two ranks claiming the same GPU (same host, same LOCAL_RANK) are refused.
//   2. (with NCCL) rank 0 makes the NCCL unique id and publishes "tapegrad/nccl_unique_id"; the
//      others read it and every rank joins the communicator on cuda:LOCAL_RANK
//      (dist/cuda/nccl_communicator.h: join_nccl).
#pragma once

#include <string>
#include <vector>

#include "dist/env.h"
#include "dist/store.h"

namespace tg::dist {

inline constexpr const char* kJoinPrefix = "tapegrad/join";
inline constexpr const char* kNcclIdKey = "tapegrad/nccl_unique_id";

struct Member {
  std::string host;
  int local_rank = 0;
  friend bool operator==(const Member&, const Member&) = default;
};

// Step 1 for this rank (`env` must match the store's rank and world size: ValueError otherwise).
// Returns every rank's member record in rank order.
std::vector<Member> join_job(TcpStore& store, const LaunchEnv& env, const std::string& host);

// This machine's host name (gethostname).
std::string host_name();

}  // namespace tg::dist
