// ENGINE_HOST_DEVICE: marks a function that both the CPU code and the CUDA kernels run (and the
// host tests check), for headers that g++ and nvcc both compile.
#pragma once

#if defined(__CUDACC__)
#define ENGINE_HOST_DEVICE __host__ __device__
#else
#define ENGINE_HOST_DEVICE
#endif
