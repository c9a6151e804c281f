# Resolves TAPEGRAD_CUDA (AUTO|ON|OFF) into TG_WITH_CUDA and sets up the CUDA language and
# libraries. AUTO builds the CUDA backend when nvcc is found (also on machines without a GPU:
# CUDA tests then report themselves skipped at run time).
include(CheckLanguage)
set(TG_WITH_CUDA OFF)
if(NOT TAPEGRAD_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(TG_WITH_CUDA ON)
  elseif(TAPEGRAD_CUDA STREQUAL "ON")
    message(FATAL_ERROR "tapegrad: TAPEGRAD_CUDA=ON but no CUDA compiler (nvcc) was found; "
      "install the CUDA toolkit at /usr/local/cuda or set CMAKE_CUDA_COMPILER.")
  endif()
endif()

if(TG_WITH_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)   # the H200 (sm_90); override with -DCMAKE_CUDA_ARCHITECTURES=...
  endif()
  enable_language(CUDA)
  # CMake 3.25 does not know nvcc 13's C++20 flag; teach it (newer CMake knows it already).
  if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  string(APPEND CMAKE_CUDA_FLAGS " --expt-relaxed-constexpr")
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "tapegrad: CUDA backend ON (architectures ${CMAKE_CUDA_ARCHITECTURES})")
else()
  message(STATUS "tapegrad: CUDA backend OFF")
endif()
