// data_parallel.h: the build's NCCL availability.
#include "dist/data_parallel.h"

#include "core/error.h"

namespace tg::dist {

bool cuda_data_parallel_available() { return TG_WITH_NCCL != 0; }

void require_cuda_data_parallel(const LaunchEnv& env) {
  TG_CHECK(!env.distributed() || cuda_data_parallel_available(), NotImplementedError,
           "data parallelism on CUDA is unavailable: the launcher environment asks for WORLD_SIZE=", env.world_size,
           " ranks, but this build of tapegrad has no NCCL; configure with the CUDA backend and "
           "-DTAPEGRAD_NCCL=ON (nccl.h and libnccl under /usr/local/cuda, or -DTAPEGRAD_NCCL_ROOT=DIR), or run the "
           "ranks on the CPU (--device cpu)");
}

}  // namespace tg::dist
