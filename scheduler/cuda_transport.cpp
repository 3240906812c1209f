#include "cuda_transport.h"

#include <cuda_runtime.h>

#include <algorithm>

#include <fmt/format.h>

#include "engine/error.h"
#include "nccl_library.h"
#include "scheduler/cuda_check.h"

namespace engine {
namespace {

CudaStageLink& link_of(Stage& stage, const char* transport) {
  CudaStageLink* link = stage.cuda_link();
  if (link == nullptr) {
    throw Error(fmt::format("transport {}: connects stages on CUDA devices; this one runs on the CPU", transport));
  }
  return *link;
}

// Lets `device` read `peer`'s memory directly where the pair allows it, so that peer copies go
// over NVLink or PCIe without the driver staging them through the host.
void enable_peer_access(int device, int peer) {
  int can = 0;
  ENGINE_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, device, peer));
  if (can == 0) return;
  ENGINE_CUDA_CHECK(cudaSetDevice(device));
  const cudaError_t status = cudaDeviceEnablePeerAccess(peer, 0);
  if (status == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();  // clears the sticky "already enabled"
    return;
  }
  ENGINE_CUDA_CHECK(status);
}

class PeerTransport final : public Transport {
 public:
  PeerTransport(CudaStageLink& from, CudaStageLink& to) : from_(from), to_(to) {
    from_.leave_output_on_device();
    to_.take_input_on_device();
    if (from_.device() != to_.device()) enable_peer_access(to_.device(), from_.device());
    ENGINE_CUDA_CHECK(cudaSetDevice(from_.device()));
    ENGINE_CUDA_CHECK(cudaEventCreateWithFlags(&sent_, cudaEventDisableTiming));
  }
  ~PeerTransport() override {
    cudaSetDevice(from_.device());
    cudaEventDestroy(sent_);
  }
  const char* name() const override { return "peer"; }

  void send(int64_t n_floats) override {
    auto* stream = static_cast<cudaStream_t>(from_.stream());
    ENGINE_CUDA_CHECK(cudaSetDevice(from_.device()));
    // The receiver is done with its buffer (its previous micro-batch) before it is overwritten.
    ENGINE_CUDA_CHECK(cudaStreamWaitEvent(stream, static_cast<cudaEvent_t>(to_.forward_done()), 0));
    ENGINE_CUDA_CHECK(cudaMemcpyPeerAsync(to_.device_hidden(), to_.device(), from_.device_hidden(), from_.device(),
                                          sizeof(float) * static_cast<size_t>(n_floats), stream));
    ENGINE_CUDA_CHECK(cudaEventRecord(sent_, stream));
    to_.wait_before_next_forward(sent_);
  }

 private:
  CudaStageLink& from_;
  CudaStageLink& to_;
  cudaEvent_t sent_ = nullptr;
};

class NcclGroupImpl final : public NcclGroup {
 public:
  explicit NcclGroupImpl(const std::vector<int>& devices) : devices_(devices) {
    for (size_t i = 0; i < devices_.size(); ++i) {
      if (std::count(devices_.begin(), devices_.end(), devices_[i]) > 1) {
        throw Error(fmt::format("transport nccl: cuda{} holds two stages (slices); NCCL allows one rank per GPU, "
                                "use --transport peer", devices_[i]));
      }
    }
    const NcclLibrary& nccl = nccl_library();
    comms_.resize(devices_.size());
    check_nccl(nccl.comm_init_all(comms_.data(), static_cast<int>(devices_.size()), devices_.data()),
               "ncclCommInitAll");
  }
  ~NcclGroupImpl() override {
    const NcclLibrary& nccl = nccl_library();
    for (ncclComm_t c : comms_) {
      if (c != nullptr) (aborted_ ? nccl.comm_abort : nccl.comm_destroy)(c);
    }
  }
  int rank_of(int device) const override {
    const auto it = std::find(devices_.begin(), devices_.end(), device);
    if (it == devices_.end()) throw Error(fmt::format("transport nccl: cuda{} is not in the communicator", device));
    return static_cast<int>(it - devices_.begin());
  }
  ncclComm_t comm(int rank) const { return comms_[static_cast<size_t>(rank)]; }

  // Once: every rank's communicator aborted, so nothing keeps waiting for a peer that failed.
  void abort() noexcept {
    if (aborted_) return;
    aborted_ = true;
    const NcclLibrary& nccl = nccl_library();
    for (ncclComm_t& c : comms_) {
      if (c != nullptr) nccl.comm_abort(c);
      c = nullptr;
    }
  }

  // Throws if a rank reports an asynchronous error (a failed peer, a broken link).
  void check_async() const {
    const NcclLibrary& nccl = nccl_library();
    for (ncclComm_t c : comms_) {
      ncclResult_t async = ncclSuccess;
      check_nccl(nccl.comm_get_async_error(c, &async), "ncclCommGetAsyncError");
      check_nccl(async, "(asynchronous error)");
    }
  }

 private:
  std::vector<int> devices_;
  std::vector<ncclComm_t> comms_;
  bool aborted_ = false;
};

class NcclTransport final : public Transport {
 public:
  NcclTransport(CudaStageLink& from, CudaStageLink& to, std::shared_ptr<NcclGroupImpl> group)
      : from_(from), to_(to), group_(std::move(group)), from_rank_(group_->rank_of(from.device())),
        to_rank_(group_->rank_of(to.device())) {
    if (from_rank_ == to_rank_) {
      throw Error(fmt::format("transport nccl: both stages are on cuda{}; NCCL allows one rank per GPU, use "
                              "--transport peer", from.device()));
    }
    from_.leave_output_on_device();
    to_.take_input_on_device();
  }
  const char* name() const override { return "nccl"; }

  void send(int64_t n_floats) override {
    const NcclLibrary& nccl = nccl_library();
    const size_t n = static_cast<size_t>(n_floats);
    check_nccl(nccl.group_start(), "ncclGroupStart");
    check_nccl(nccl.send(from_.device_hidden(), n, ncclFloat32, to_rank_, group_->comm(from_rank_),
                         static_cast<cudaStream_t>(from_.stream())), "ncclSend");
    check_nccl(nccl.recv(to_.device_hidden(), n, ncclFloat32, from_rank_, group_->comm(to_rank_),
                         static_cast<cudaStream_t>(to_.stream())), "ncclRecv");
    check_nccl(nccl.group_end(), "ncclGroupEnd");
    group_->check_async();
  }

  void abort() noexcept override { group_->abort(); }

 private:
  CudaStageLink& from_;
  CudaStageLink& to_;
  std::shared_ptr<NcclGroupImpl> group_;
  int from_rank_, to_rank_;
};

}  // namespace

std::unique_ptr<Transport> make_peer_transport(Stage& from, Stage& to) {
  return std::make_unique<PeerTransport>(link_of(from, "peer"), link_of(to, "peer"));
}

std::shared_ptr<NcclGroup> make_nccl_group(const std::vector<int>& devices) {
  return std::make_shared<NcclGroupImpl>(devices);
}

std::unique_ptr<Transport> make_nccl_transport(Stage& from, Stage& to, std::shared_ptr<NcclGroup> group) {
  auto impl = std::dynamic_pointer_cast<NcclGroupImpl>(group);
  if (impl == nullptr) throw Error("transport nccl: not a communicator made by make_nccl_group");
  return std::make_unique<NcclTransport>(link_of(from, "nccl"), link_of(to, "nccl"), std::move(impl));
}

void nccl_self_send(int device, const float* from, float* to, size_t n) {
  NcclGroupImpl group({device});
  const NcclLibrary& nccl = nccl_library();
  ENGINE_CUDA_CHECK(cudaSetDevice(device));
  cudaStream_t stream = nullptr;
  ENGINE_CUDA_CHECK(cudaStreamCreate(&stream));
  try {
    check_nccl(nccl.group_start(), "ncclGroupStart");
    check_nccl(nccl.send(from, n, ncclFloat32, 0, group.comm(0), stream), "ncclSend");
    check_nccl(nccl.recv(to, n, ncclFloat32, 0, group.comm(0), stream), "ncclRecv");
    check_nccl(nccl.group_end(), "ncclGroupEnd");
    ENGINE_CUDA_CHECK(cudaStreamSynchronize(stream));
    group.check_async();
  } catch (...) {
    cudaStreamDestroy(stream);
    throw;
  }
  ENGINE_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace engine
