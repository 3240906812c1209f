#include "nccl_library.h"

#include <dlfcn.h>

#include <fmt/format.h>

#include "engine/error.h"

namespace engine {
namespace {

constexpr const char* kLibrary = "libnccl.so.2";

template <typename F>
void bind(void* handle, const char* name, F& f) {
  void* symbol = dlsym(handle, name);
  if (symbol == nullptr) throw Error(fmt::format("NCCL: {} has no symbol {}", kLibrary, name));
  f = reinterpret_cast<F>(symbol);
}

NcclLibrary load() {
  void* handle = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw Error(fmt::format("NCCL: cannot load {}: {} (install NCCL or choose --transport peer|host)", kLibrary,
                            why != nullptr ? why : "unknown error"));
  }
  NcclLibrary lib{};
  bind(handle, "ncclGetVersion", lib.get_version);
  bind(handle, "ncclCommInitAll", lib.comm_init_all);
  bind(handle, "ncclCommDestroy", lib.comm_destroy);
  bind(handle, "ncclCommAbort", lib.comm_abort);
  bind(handle, "ncclCommGetAsyncError", lib.comm_get_async_error);
  bind(handle, "ncclGetErrorString", lib.get_error_string);
  bind(handle, "ncclGroupStart", lib.group_start);
  bind(handle, "ncclGroupEnd", lib.group_end);
  bind(handle, "ncclSend", lib.send);
  bind(handle, "ncclRecv", lib.recv);
  return lib;  // the handle stays open for the life of the process
}

}  // namespace

const NcclLibrary& nccl_library() {
  static const NcclLibrary lib = load();
  return lib;
}

void check_nccl(ncclResult_t status, const char* call) {
  if (status != ncclSuccess) {
    throw Error(fmt::format("NCCL {} failed: {} ({})", call, nccl_library().get_error_string(status),
                            static_cast<int>(status)));
  }
}

}  // namespace engine
