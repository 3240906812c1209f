#include "device_arena.h"

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/memory_model.h"

namespace engine {

uint64_t DeviceArena::take(uint64_t bytes, std::string_view what) {
  const uint64_t size = align_device(bytes);
  if (size > capacity_ - used_) {
    throw Error(fmt::format("{}: {} needs {} bytes but {} of the stage's {} remain (the memory model "
                            "counts less than the stage allocates)",
                            owner_, what, size, capacity_ - used_, capacity_));
  }
  const uint64_t offset = used_;
  used_ += size;
  return offset;
}

void DeviceArena::expect_full() const {
  if (used_ != capacity_) {
    throw Error(fmt::format("{}: the stage carved {} of the {} bytes the memory model counts for it", owner_,
                            used_, capacity_));
  }
}

}  // namespace engine
