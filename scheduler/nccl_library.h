// NCCL, loaded when a pipeline first asks for the nccl transport rather than linked: a binary of
// ours starts (and runs every other transport) on machines without libnccl.so.2, and says so in
// one line when NCCL is asked for there. CUDA builds only.
#pragma once

#include <nccl.h>

namespace engine {

struct NcclLibrary {
  ncclResult_t (*get_version)(int*);
  ncclResult_t (*comm_init_all)(ncclComm_t*, int, const int*);
  ncclResult_t (*comm_destroy)(ncclComm_t);
  ncclResult_t (*comm_abort)(ncclComm_t);
  ncclResult_t (*comm_get_async_error)(ncclComm_t, ncclResult_t*);
  const char* (*get_error_string)(ncclResult_t);
  ncclResult_t (*group_start)();
  ncclResult_t (*group_end)();
  ncclResult_t (*send)(const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
};

// The library, loaded once; throws engine::Error naming the file and dlerror() when it cannot be
// loaded or lacks a symbol.
const NcclLibrary& nccl_library();

// Throws engine::Error "NCCL <call> failed: <reason>" unless status is ncclSuccess.
void check_nccl(ncclResult_t status, const char* call);

}  // namespace engine
