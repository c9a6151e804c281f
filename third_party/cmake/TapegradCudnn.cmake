# Resolves TAPEGRAD_CUDNN (AUTO|ON|OFF) into TG_WITH_CUDNN and defines the imported target
# tg::cudnn. cuDNN needs the CUDA backend; cudnn.h and libcudnn are looked for under
# TAPEGRAD_CUDNN_ROOT, then in the CUDA toolkit (/usr/local/cuda here). With it, bf16 fused
# attention runs cuDNN's flash-attention engines (ops/cuda/attention_cudnn.cpp); without it,
# tapegrad's own kernels (ops/cuda/attention.cu).
set(TAPEGRAD_CUDNN "AUTO" CACHE STRING "Use cuDNN for the bf16 fused attention: AUTO, ON or OFF")
set_property(CACHE TAPEGRAD_CUDNN PROPERTY STRINGS AUTO ON OFF)
set(TAPEGRAD_CUDNN_ROOT "" CACHE PATH "Folder with include/cudnn.h and lib/libcudnn.so (optional)")
set(TG_WITH_CUDNN OFF)
if(NOT TAPEGRAD_CUDNN STREQUAL "OFF")
  if(TG_WITH_CUDA)
    find_path(TG_CUDNN_INCLUDE_DIR cudnn.h
      HINTS "${TAPEGRAD_CUDNN_ROOT}/include" ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
    find_library(TG_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9
      HINTS "${TAPEGRAD_CUDNN_ROOT}/lib" "${TAPEGRAD_CUDNN_ROOT}/lib64" ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
    if(TG_CUDNN_INCLUDE_DIR AND TG_CUDNN_LIBRARY)
      set(TG_WITH_CUDNN ON)
      add_library(tg::cudnn UNKNOWN IMPORTED)
      set_target_properties(tg::cudnn PROPERTIES IMPORTED_LOCATION "${TG_CUDNN_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${TG_CUDNN_INCLUDE_DIR}")
    endif()
  endif()
  if(TAPEGRAD_CUDNN STREQUAL "ON" AND NOT TG_WITH_CUDNN)
    message(FATAL_ERROR "tapegrad: TAPEGRAD_CUDNN=ON but cuDNN is not usable: it needs the CUDA backend "
      "(TG_WITH_CUDA=${TG_WITH_CUDA}) and cudnn.h plus libcudnn (found: '${TG_CUDNN_INCLUDE_DIR}', "
      "'${TG_CUDNN_LIBRARY}'); set -DTAPEGRAD_CUDNN_ROOT=DIR or -DTAPEGRAD_CUDNN=AUTO.")
  endif()
endif()
if(TG_WITH_CUDNN)
  message(STATUS "tapegrad: cuDNN ON (${TG_CUDNN_LIBRARY}); bf16 fused attention through cuDNN")
else()
  message(STATUS "tapegrad: cuDNN OFF; fused attention runs tapegrad's own kernels only")
endif()
