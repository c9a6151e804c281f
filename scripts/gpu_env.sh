# Sourced by the GPU scripts: the shared libraries tapegrad's binaries load on the GPU machine.
# /usr/local/cuda/lib64 there may lack cuDNN and NCCL; PyTorch's wheels provide them
# (nvidia-cudnn-cu13: libcudnn.so.9, nvidia-nccl-cu13: libnccl.so.2), found through python3.
# cuDNN's runtime must be at least the version of the headers the binaries were built with
# (tapegrad checks that when it creates its handle). $tg_libs is the LD_LIBRARY_PATH for
# tapegrad's binaries only: PyTorch, started from the same scripts, keeps its own. NVLink
# multicast stays off.
tg_wheel_lib() {  # MODULE: the lib folder of an nvidia.* wheel, or nothing
  python3 -c "import os, $1 as m; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null
}
tg_cudnn_lib=$(tg_wheel_lib nvidia.cudnn)
tg_nccl_lib=$(tg_wheel_lib nvidia.nccl)
tg_libs=/usr/local/cuda/lib64${tg_cudnn_lib:+:$tg_cudnn_lib}${tg_nccl_lib:+:$tg_nccl_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0
