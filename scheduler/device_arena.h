// Bookkeeping of one stage's device memory. A GPU stage makes a single allocation of exactly the
// bytes the memory model counts for it (weights, KV cache, scratch) and carves every buffer from
// it here, in order, at kDeviceAlignment: so the plan is the allocation, and a stage on a slice of
// a GPU can never take more than the slice's budget. Offsets only (no device calls), so CI tests it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace engine {

class DeviceArena {
 public:
  // owner names the stage in errors ("cuda0 slice 1, layers 0-31").
  DeviceArena(std::string owner, uint64_t capacity) : owner_(std::move(owner)), capacity_(capacity) {}

  // Offset of a new buffer of `bytes`; throws engine::Error naming the owner, `what` and the
  // numbers when it does not fit in what is left.
  uint64_t take(uint64_t bytes, std::string_view what);

  // Throws engine::Error unless every byte was taken: a stage that carves less than its plan
  // means the memory model and the stage disagree, which the planner's exactness rests on.
  void expect_full() const;

  uint64_t used() const { return used_; }
  uint64_t capacity() const { return capacity_; }

 private:
  std::string owner_;
  uint64_t capacity_ = 0, used_ = 0;
};

}  // namespace engine
