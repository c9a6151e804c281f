// The join step of the rendezvous: every rank's host and LOCAL_RANK in rank order, a missing
// rank named at the timeout, two ranks on one GPU refused, a store that does not match the
// launcher environment refused.
#include <doctest/doctest.h>

#include <thread>

#include "core/error.h"
#include "dist/rendezvous.h"
#include "tests/dist/store_fixture.h"
#include "tests/support/test_support.h"

using namespace tg;
using namespace tg::dist;
using namespace std::chrono_literals;

namespace {

using test::store_options;

LaunchEnv env_of(int rank, int world_size, int local_rank) { return {rank, world_size, local_rank, "127.0.0.1", 1}; }

// Runs join_job for ranks 1.. in threads and rank 0 here; each result is the members or the
// DistributedError's message.
struct Joined {
  std::vector<std::vector<Member>> members;
  std::vector<std::string> errors;
};
Joined join_all(const std::vector<Member>& who, std::chrono::milliseconds timeout = 5000ms) {
  const int n = static_cast<int>(who.size());
  Joined out{std::vector<std::vector<Member>>(who.size()), std::vector<std::string>(who.size())};
  TcpStore rank0(store_options(0, n, 0, timeout));
  const auto join = [&](TcpStore& store) {
    const auto r = static_cast<size_t>(store.rank());
    out.errors[r] = test::thrown_message<DistributedError>(
        [&] { out.members[r] = join_job(store, env_of(store.rank(), n, who[r].local_rank), who[r].host); });
  };
  std::vector<std::thread> others;
  for (int r = 1; r < n; ++r)
    others.emplace_back([&, r] {
      TcpStore store(store_options(r, n, rank0.port(), timeout));
      join(store);
    });
  join(rank0);
  for (auto& t : others) t.join();
  return out;
}

}  // namespace

TEST_CASE("join_job gives every rank the host and LOCAL_RANK of all ranks in rank order") {
  const std::vector<Member> who = {{"node-a", 0}, {"node-a", 1}, {"node-b", 0}};
  const Joined joined = join_all(who);
  for (size_t r = 0; r < who.size(); ++r) {
    CAPTURE(r);
    CHECK(joined.errors[r] == "(no error)");
    CHECK(joined.members[r] == who);
  }
  CHECK_FALSE(host_name().empty());
}

TEST_CASE("two ranks on the same GPU of a host are refused by every rank") {
  const Joined joined = join_all({{"node-a", 0}, {"node-a", 1}, {"node-a", 1}});
  for (const auto& error : joined.errors)
    CHECK(error == "join_job: ranks 1 and 2 both have LOCAL_RANK 1 on host 'node-a'; each rank needs a GPU of its own");
}

TEST_CASE("a rank that never joins is named; a store that does not match the environment is refused") {
  TcpStore rank0(store_options(0, 2, 0, 100ms));
  CHECK(test::thrown_message<DistributedError>([&] { join_job(rank0, env_of(0, 2, 0), "node-a"); }) ==
        "TcpStore: rank 0 waited 100 ms for 'tapegrad/join' from all 2 ranks; missing rank(s): 1");
  CHECK(test::thrown_message<ValueError>([&] { join_job(rank0, env_of(1, 2, 0), "node-a"); }) ==
        "join_job: the store is rank 0 of 2 but the launcher environment says rank 1 of 2");
}
