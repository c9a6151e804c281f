// join_job of rendezvous.h: the join records ("<host>\n<local rank>") and their checks.
#include "dist/rendezvous.h"

#include <unistd.h>

#include <charconv>
#include <map>

#include "core/error.h"

namespace tg::dist {

std::vector<Member> join_job(TcpStore& store, const LaunchEnv& env, const std::string& host) {
  TG_CHECK(store.rank() == env.rank && store.world_size() == env.world_size, ValueError, "join_job: the store is rank ",
           store.rank(), " of ", store.world_size(), " but the launcher environment says rank ", env.rank, " of ",
           env.world_size);
  const std::string mine = host + "\n" + std::to_string(env.local_rank);
  const std::vector<Bytes> records = all_gather(store, kJoinPrefix, Bytes(mine.begin(), mine.end()));
  std::vector<Member> members;
  std::map<std::pair<std::string, int>, int> owner;  // (host, local rank) -> first rank claiming it
  for (int rank = 0; rank < static_cast<int>(records.size()); ++rank) {
    const std::string text(records[static_cast<size_t>(rank)].begin(), records[static_cast<size_t>(rank)].end());
    const size_t newline = text.rfind('\n');
    Member m;
    const char* end = text.data() + text.size();
    const auto parsed = newline == std::string::npos ? std::from_chars_result{text.data(), std::errc::invalid_argument}
                                                     : std::from_chars(text.data() + newline + 1, end, m.local_rank);
    TG_CHECK(parsed.ec == std::errc() && parsed.ptr == end, DistributedError, "join_job: rank ", rank,
             " published a malformed join record '", text, "' (expected '<host>\\n<local rank>')");
    m.host = text.substr(0, newline);
    const auto [it, fresh] = owner.try_emplace({m.host, m.local_rank}, rank);
    TG_CHECK(fresh, DistributedError, "join_job: ranks ", it->second, " and ", rank, " both have LOCAL_RANK ",
             m.local_rank, " on host '", m.host, "'; each rank needs a GPU of its own");
    members.push_back(std::move(m));
  }
  return members;
}

std::string host_name() {
  char name[256] = {};
  TG_CHECK(::gethostname(name, sizeof name - 1) == 0, DistributedError, "host_name: gethostname failed");
  return name;
}

}  // namespace tg::dist
