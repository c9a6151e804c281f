// Whether this build can run data-parallel jobs on CUDA (NCCL found at configure time:
// TG_WITH_NCCL), and the one message a program gives when a launcher asks for several ranks on
// CUDA that the build cannot serve. Data-parallel runs on the CPU need no NCCL (their
// collectives go through the job's TcpStore: dist/store_communicator.h).
#pragma once

#include "dist/env.h"

namespace tg::dist {

bool cuda_data_parallel_available();

// NotImplementedError when `env` is a distributed job (WORLD_SIZE > 1) and this build has no
// NCCL; the message says how to get a build with it. For runs on CUDA.
void require_cuda_data_parallel(const LaunchEnv& env);

}  // namespace tg::dist
