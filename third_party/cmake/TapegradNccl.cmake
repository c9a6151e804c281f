# Resolves TAPEGRAD_NCCL (AUTO|ON|OFF) into TG_WITH_NCCL and defines the imported target
# tg::nccl. NCCL needs the CUDA backend. nccl.h and libnccl are looked for under
# TAPEGRAD_NCCL_ROOT, then in the CUDA toolkit (/usr/local/cuda here). AUTO uses NCCL when both
# are found; without it the build succeeds and data parallelism reports itself unavailable
# (dist/data_parallel.h).
set(TAPEGRAD_NCCL "AUTO" CACHE STRING "Build the NCCL communicator for data parallelism: AUTO, ON or OFF")
set_property(CACHE TAPEGRAD_NCCL PROPERTY STRINGS AUTO ON OFF)
set(TAPEGRAD_NCCL_ROOT "" CACHE PATH "Folder with include/nccl.h and lib/libnccl.so (optional)")
set(TG_WITH_NCCL OFF)
if(NOT TAPEGRAD_NCCL STREQUAL "OFF")
  if(TG_WITH_CUDA)
    find_path(TG_NCCL_INCLUDE_DIR nccl.h
      HINTS "${TAPEGRAD_NCCL_ROOT}/include" ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
    find_library(TG_NCCL_LIBRARY NAMES nccl libnccl.so.2
      HINTS "${TAPEGRAD_NCCL_ROOT}/lib" "${TAPEGRAD_NCCL_ROOT}/lib64" ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
    if(TG_NCCL_INCLUDE_DIR AND TG_NCCL_LIBRARY)
      set(TG_WITH_NCCL ON)
      add_library(tg::nccl UNKNOWN IMPORTED)
      set_target_properties(tg::nccl PROPERTIES IMPORTED_LOCATION "${TG_NCCL_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${TG_NCCL_INCLUDE_DIR}")
    endif()
  endif()
  if(TAPEGRAD_NCCL STREQUAL "ON" AND NOT TG_WITH_NCCL)
    message(FATAL_ERROR "tapegrad: TAPEGRAD_NCCL=ON but NCCL is not usable: it needs the CUDA backend "
      "(TG_WITH_CUDA=${TG_WITH_CUDA}) and nccl.h plus libnccl (found: '${TG_NCCL_INCLUDE_DIR}', "
      "'${TG_NCCL_LIBRARY}'); set -DTAPEGRAD_NCCL_ROOT=DIR or -DTAPEGRAD_NCCL=AUTO.")
  endif()
endif()
if(TG_WITH_NCCL)
  message(STATUS "tapegrad: NCCL ON (${TG_NCCL_LIBRARY}); data parallelism available")
else()
  message(STATUS "tapegrad: NCCL OFF; data parallelism unavailable in this build")
endif()
