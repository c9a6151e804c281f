// launch: runs a command as N ranks of a data-parallel job on this host, as torchrun
// --standalone does: launch --nproc-per-node N [--master-addr A] [--master-port P]
// [--grace-seconds S] -- PROGRAM ARGS... Each rank gets RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and NCCL_NVLS_ENABLE=0 unless set). Exit codes:
// 0 when every rank succeeded, 1 when a rank failed (the others are stopped; the message names
// the rank), 2 for bad flags, 128 + N after forwarding signal N. docs/distributed.md.
#include <CLI/CLI.hpp>

#include <cmath>
#include <iostream>

#include "core/error.h"
#include "dist/launcher.h"

int main(int argc, char** argv) {
  tg::dist::LaunchConfig config;
  double grace_seconds = 5.0;
  CLI::App app{"launch: run a command as N data-parallel ranks on this host (torchrun's environment)"};
  app.option_defaults()->always_capture_default();
  app.add_option("--nproc-per-node", config.nproc_per_node, "number of ranks (one per GPU)")->required();
  app.add_option("--master-addr", config.master_addr, "address of rank 0's store (MASTER_ADDR)");
  app.add_option("--master-port", config.master_port, "port of rank 0's store (MASTER_PORT)");
  app.add_option("--grace-seconds", grace_seconds,
                 "after a rank fails or a signal arrives: seconds between SIGTERM and SIGKILL for the others");
  app.add_option("command", config.command, "PROGRAM ARGS... (after --)")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help: 0; a bad or missing flag: 2
  }
  try {
    TG_CHECK(std::isfinite(grace_seconds) && grace_seconds >= 0, ValueError,
             "launch: --grace-seconds must be a finite number >= 0, got ", grace_seconds);
    config.grace = std::chrono::milliseconds(static_cast<int64_t>(std::llround(grace_seconds * 1000)));
    return tg::dist::launch(config, std::cerr);
  } catch (const tg::ValueError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const tg::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
