// launch() of launcher.h: fork/exec of the ranks and the supervision loop on sigtimedwait.
#include "dist/launcher.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <ostream>

#include "core/error.h"

namespace tg::dist {

namespace {

using Clock = std::chrono::steady_clock;

struct Rank {
  int index;
  pid_t pid;
  bool running = true;
};

// "exited with code 3" / "was killed by signal 9 (Killed)".
std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  const int signal = WTERMSIG(status);
  return "was killed by signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
}

// A NULL-terminated char* array over `strings` (which must outlive it), made before fork.
std::vector<char*> c_array(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// In the child: its own process group, death with the launcher, default signal handling, the
// launcher environment; then exec. Only async-signal-safe calls: everything was prepared before
// fork.
[[noreturn]] void exec_rank(char* const* argv, char* const* env, const sigset_t& parent_mask, pid_t launcher) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != launcher) ::_exit(128 + SIGKILL);  // the launcher died before prctl
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) ::signal(s, SIG_DFL);
  ::sigprocmask(SIG_SETMASK, &parent_mask, nullptr);
  for (char* const* entry = env; *entry != nullptr; ++entry) ::putenv(*entry);
  ::execvp(argv[0], argv);
  const char* reason = ::strerror(errno);
  const char prefix[] = "launch: cannot run ";
  (void)!::write(2, prefix, sizeof prefix - 1);
  (void)!::write(2, argv[0], std::strlen(argv[0]));
  (void)!::write(2, ": ", 2);
  (void)!::write(2, reason, std::strlen(reason));
  (void)!::write(2, "\n", 1);
  ::_exit(127);
}

void signal_running(std::vector<Rank>& ranks, int signal) {
  for (const auto& rank : ranks)
    if (rank.running) ::kill(-rank.pid, signal);
}

// Blocks `block` in the calling thread and gives SIGCHLD its default action (with SIG_IGN the
// kernel would reap the ranks before waitpid sees their status); restores both when launch()
// returns or throws.
class SignalGuard {
 public:
  explicit SignalGuard(const sigset_t& block) {
    ::pthread_sigmask(SIG_BLOCK, &block, &previous_mask_);
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    ::sigemptyset(&default_action.sa_mask);
    ::sigaction(SIGCHLD, &default_action, &previous_child_);
  }
  ~SignalGuard() {
    ::sigaction(SIGCHLD, &previous_child_, nullptr);
    ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
  }
  const sigset_t& previous_mask() const { return previous_mask_; }

 private:
  sigset_t previous_mask_;
  struct sigaction previous_child_ {};
};

}  // namespace

int launch(const LaunchConfig& config, std::ostream& log) {
  TG_CHECK(config.nproc_per_node >= 1, ValueError, "launch: --nproc-per-node must be at least 1, got ",
           config.nproc_per_node);
  TG_CHECK(!config.command.empty(), ValueError, "launch: no command to run (launch [options] -- PROGRAM ARGS...)");
  TG_CHECK(config.master_port >= 1 && config.master_port <= 65535, ValueError,
           "launch: --master-port must be in [1, 65535], got ", config.master_port);
  TG_CHECK(config.grace.count() >= 0, ValueError, "launch: the grace period must be >= 0, got ", config.grace.count(),
           " ms");

  sigset_t handled;
  ::sigemptyset(&handled);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) ::sigaddset(&handled, s);
  const SignalGuard signals(handled);

  const std::string world = std::to_string(config.nproc_per_node);
  const bool nvls_set = std::getenv("NCCL_NVLS_ENABLE") != nullptr;
  std::vector<Rank> ranks;
  for (int r = 0; r < config.nproc_per_node; ++r) {
    std::vector<std::string> env = {"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r),
                                    "WORLD_SIZE=" + world, "LOCAL_WORLD_SIZE=" + world,
                                    "MASTER_ADDR=" + config.master_addr,
                                    "MASTER_PORT=" + std::to_string(config.master_port)};
    if (!nvls_set) env.push_back("NCCL_NVLS_ENABLE=0");  // the GPU machine's notes require it off
    const std::vector<char*> argv = c_array(config.command), envp = c_array(env);
    log << std::flush;
    const pid_t launcher = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) exec_rank(argv.data(), envp.data(), signals.previous_mask(), launcher);
    if (pid < 0) {
      const std::string reason = std::strerror(errno);
      signal_running(ranks, SIGKILL);
      for (auto& rank : ranks) ::waitpid(rank.pid, nullptr, 0);
      TG_THROW(DistributedError, "launch: could not start rank ", r, ": fork failed: ", reason);
    }
    ::setpgid(pid, pid);  // also here, so that a signal sent right away reaches the group
    ranks.push_back({r, pid});
  }

  std::optional<std::string> failure;  // the first failing rank, or the signal that stopped the job
  int exit_code = 0;
  constexpr Clock::time_point kNever = Clock::time_point::max();
  Clock::time_point kill_at = kNever;  // SIGKILL whatever still runs then
  int running = config.nproc_per_node;
  const auto stop_others = [&] {
    signal_running(ranks, SIGTERM);
    kill_at = Clock::now() + config.grace;
  };
  while (running > 0) {
    for (auto& rank : ranks) {
      int status = 0;
      if (!rank.running) continue;
      const pid_t reaped = ::waitpid(rank.pid, &status, WNOHANG);
      // -1 with ECHILD: someone else reaped the rank (another thread's waitpid(-1)); it is gone
      // and its status is lost, which counts as a failure rather than waiting for it forever.
      const bool lost = reaped < 0 && errno == ECHILD;
      if (reaped != rank.pid && !lost) continue;
      rank.running = false;
      --running;
      const bool ok = !lost && WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && !failure) {
        failure = "rank " + std::to_string(rank.index) + " " +
                  (lost ? std::string("ended, but its exit status was reaped elsewhere") : describe_status(status));
        exit_code = 1;
        log << "launch: " << *failure << "; stopping the other " << running << " rank(s)\n" << std::flush;
        stop_others();
      }
    }
    if (running == 0) break;
    if (Clock::now() >= kill_at) {
      log << "launch: " << running << " rank(s) still running " << config.grace.count()
          << " ms after SIGTERM; sending SIGKILL\n" << std::flush;
      signal_running(ranks, SIGKILL);
      kill_at = kNever;
    }
    // Sleep until a child changes state, a signal arrives, or (at most) the kill deadline.
    auto wait_for = std::chrono::milliseconds(1000);
    if (kill_at != kNever)
      wait_for = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(kill_at - Clock::now()),
                            std::chrono::milliseconds(0), wait_for);
    const timespec timeout{static_cast<time_t>(wait_for.count() / 1000), static_cast<long>(wait_for.count() % 1000) * 1'000'000};
    const int signal = ::sigtimedwait(&handled, nullptr, &timeout);
    if (signal == SIGINT || signal == SIGTERM || signal == SIGHUP) {
      log << "launch: got SIG" << ::sigabbrev_np(signal) << "; forwarding it to " << running << " rank(s)\n" << std::flush;
      signal_running(ranks, signal);
      if (!failure) {
        failure = std::string("interrupted by SIG") + ::sigabbrev_np(signal);
        exit_code = 128 + signal;
      }
      kill_at = Clock::now() + config.grace;
    }
  }
  if (failure) log << "launch: job failed: " << *failure << "\n" << std::flush;
  return exit_code;
}

}  // namespace tg::dist
