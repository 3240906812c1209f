// Transports between two stages on CUDA devices, without the host:
//   peer: cudaMemcpyPeerAsync from the sender's device buffer into the receiver's, on the sender's
//         stream, after the receiver has finished its previous micro-batch (an event) and before
//         its next one (another event). Works between any two devices (through the driver's own
//         staging where the pair has no peer access) and between slices of one GPU (a plain
//         device copy), where NCCL cannot go.
//   nccl: ncclSend on the sender's stream and ncclRecv on the receiver's, in one group, over one
//         communicator spanning the pipeline's GPUs (one rank per GPU). Stream order alone keeps
//         each buffer's writes and reads apart. abort() calls ncclCommAbort on every rank.
// Neither makes the host wait; the last stage's wait for its logits has a deadline
// (engine/cuda_stage.cpp), after which the pipeline aborts its transports.
#pragma once

#include <memory>
#include <vector>

#include "pipeline.h"

namespace engine {

// Throws engine::Error unless both stages run on CUDA devices.
std::unique_ptr<Transport> make_peer_transport(Stage& from, Stage& to);

// One NCCL communicator over distinct CUDA devices (rank i on devices[i]).
class NcclGroup {
 public:
  virtual ~NcclGroup() = default;
  virtual int rank_of(int device) const = 0;  // throws if the device is not in the group
};

// Throws engine::Error when NCCL cannot be loaded or the communicator cannot be created, or when a
// device appears twice (NCCL allows one rank per GPU).
std::shared_ptr<NcclGroup> make_nccl_group(const std::vector<int>& devices);

// Throws engine::Error unless both stages run on CUDA devices of the group, distinct ones.
std::unique_ptr<Transport> make_nccl_transport(Stage& from, Stage& to, std::shared_ptr<NcclGroup> group);

// For tests on one GPU: sends n floats from `from` to `to` (device buffers on `device`) through a
// one-rank communicator's send/recv to itself, then waits. Throws engine::Error on failure.
void nccl_self_send(int device, const float* from, float* to, size_t n);

}  // namespace engine
