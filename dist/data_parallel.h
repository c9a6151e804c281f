// Whether this build can run data-parallel jobs (NCCL found at configure time: TG_WITH_NCCL),
// and the one message a program gives when a launcher asks for more ranks than the build can
// serve.
#pragma once

#include "dist/env.h"

namespace tg::dist {

bool data_parallel_available();

// NotImplementedError when `env` is a distributed job (WORLD_SIZE > 1) and this build has no
// NCCL; the message says how to get a build with it.
void require_data_parallel(const LaunchEnv& env);

}  // namespace tg::dist
