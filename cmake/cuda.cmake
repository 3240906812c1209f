# CUDA: optional. ENGINE_CUDA=AUTO turns it on when nvcc is found.
#
# The one place that names the GPU architectures we compile for, and why:
#   90 - H100 / H200 (Hopper): the data-centre cards we benchmark on.
#   89 - RTX 40xx / L4 / L40 (Ada): the 2x RTX 4090 setups the mission is about.
#   86 - RTX 30xx / A10 / A40 (Ampere consumer): the most common card among home users.
# 86 and 89 get SASS only; 90 also gets PTX, which newer GPUs (Blackwell) JIT-compile at load.
# Every architecture adds its full compile time to CI: see docs/build.md for the measured cost.
# Override with -DCMAKE_CUDA_ARCHITECTURES=90-real (tools/device-check does) for a faster build.
set(ENGINE_CUDA_ARCHITECTURES_DEFAULT "86-real;89-real;90")

set(ENGINE_CUDA "AUTO" CACHE STRING "Build the CUDA backend: AUTO (if nvcc is found), ON, OFF")
set_property(CACHE ENGINE_CUDA PROPERTY STRINGS AUTO ON OFF)

set(ENGINE_HAVE_CUDA OFF)
if(ENGINE_CUDA STREQUAL "AUTO" OR ENGINE_CUDA STREQUAL "ON")
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES ${ENGINE_CUDA_ARCHITECTURES_DEFAULT})
    endif()
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc's C++20 flag (nvcc >= 12 supports it): name it.
    if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(ENGINE_HAVE_CUDA ON)
    message(STATUS "engine: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
                   "architectures ${CMAKE_CUDA_ARCHITECTURES})")
  elseif(ENGINE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "ENGINE_CUDA=ON but no CUDA compiler (nvcc) was found")
  else()
    message(STATUS "engine: CUDA backend OFF (nvcc not found)")
  endif()
elseif(NOT ENGINE_CUDA STREQUAL "OFF")
  message(FATAL_ERROR "ENGINE_CUDA must be AUTO, ON or OFF, not '${ENGINE_CUDA}'")
else()
  message(STATUS "engine: CUDA backend OFF (ENGINE_CUDA=OFF)")
endif()
