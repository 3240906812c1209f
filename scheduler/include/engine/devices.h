// The devices a model can be placed on: CUDA GPUs (whole, or slices with a memory budget),
// simulated GPUs of any size (planning on any machine, CI included), and the CPU.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace engine {

enum class DeviceKind { gpu, cpu };

// One entry of --devices, as written:
//   "0"          CUDA device 0 (all its free memory)
//   "0:20GiB"    a slice of CUDA device 0 with a 20 GiB budget (several slices may share a GPU)
//   "sim:24GiB"  a simulated GPU with 24 GiB free
//   "cpu:64GiB"  the CPU with 64 GiB of RAM available (default: what the OS reports)
struct DeviceSpec {
  enum class Source { cuda, simulated, cpu };
  Source source = Source::cuda;
  int cuda_index = -1;
  std::optional<uint64_t> bytes;  // slice budget, simulated size, or CPU RAM
};

// Parses a comma-separated --devices value. Throws engine::Error "--devices: ..." naming the entry.
std::vector<DeviceSpec> parse_device_list(std::string_view text);

struct Device {
  std::string name;  // "cuda0 (NVIDIA H100 80GB HBM3)", "cuda0 slice 1", "sim1", "cpu"
  DeviceKind kind = DeviceKind::gpu;
  int cuda_index = -1;  // the CUDA device behind a real GPU or slice; -1 when simulated or CPU
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // what the planner may use before the reserve (a slice's budget)
  int cores = 0;            // CPU only
};

struct Inventory {
  std::vector<Device> gpus;  // in the order given
  Device cpu;
};

// Available RAM and core count of this machine.
Device host_cpu();

// Resolves specs against the hardware. An empty list means every visible CUDA device plus the
// CPU. Throws engine::Error for unknown devices or slices that ask for more than a GPU has free.
Inventory resolve_devices(const std::vector<DeviceSpec>& specs);

}  // namespace engine
