// Built instead of cuda_transport.cpp when the CUDA backend is off: no stage runs on a GPU, so no
// device transport can be asked for except by name.
#include <fmt/format.h>

#include "cuda_transport.h"
#include "engine/error.h"

namespace engine {

std::unique_ptr<Transport> make_peer_transport(Stage&, Stage&) {
  throw Error("transport peer: engine built without CUDA");
}

std::shared_ptr<NcclGroup> make_nccl_group(const std::vector<int>&) {
  throw Error("transport nccl: engine built without CUDA");
}

std::unique_ptr<Transport> make_nccl_transport(Stage&, Stage&, std::shared_ptr<NcclGroup>) {
  throw Error("transport nccl: engine built without CUDA");
}

void nccl_self_send(int device, const float*, float*, size_t) {
  throw Error(fmt::format("cuda{}: engine built without CUDA", device));
}

}  // namespace engine
