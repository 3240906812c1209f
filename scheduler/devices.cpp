#include "engine/devices.h"

#include <unistd.h>

#include <charconv>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "engine/byte_size.h"
#include "engine/error.h"
#include "scheduler/cuda_runtime.h"

namespace engine {
namespace {

[[noreturn]] void fail(std::string_view entry, std::string_view problem) {
  throw Error(fmt::format("--devices: '{}': {}", entry, problem));
}

uint64_t parse_size_or_fail(std::string_view entry, std::string_view size) {
  auto bytes = parse_byte_size(size);
  if (!bytes || *bytes == 0) fail(entry, fmt::format("'{}' is not a size such as 24GiB", size));
  return *bytes;
}

}  // namespace

std::vector<DeviceSpec> parse_device_list(std::string_view text) {
  std::vector<DeviceSpec> specs;
  if (text.empty()) throw Error("--devices: empty list");
  bool saw_cpu = false;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view entry = text.substr(start, comma == std::string_view::npos ? comma : comma - start);
    start = comma == std::string_view::npos ? text.size() + 1 : comma + 1;
    if (entry.empty()) throw Error("--devices: empty entry");
    DeviceSpec spec;
    const size_t colon = entry.find(':');
    const std::string_view head = entry.substr(0, colon);
    const std::string_view tail = colon == std::string_view::npos ? "" : entry.substr(colon + 1);
    if (head == "sim") {
      if (tail.empty()) fail(entry, "a simulated GPU needs a size (sim:24GiB)");
      spec.source = DeviceSpec::Source::simulated;
      spec.bytes = parse_size_or_fail(entry, tail);
    } else if (head == "cpu") {
      if (saw_cpu) fail(entry, "the CPU is listed twice");
      saw_cpu = true;
      spec.source = DeviceSpec::Source::cpu;
      if (!tail.empty()) spec.bytes = parse_size_or_fail(entry, tail);
    } else {
      int index = -1;
      auto [end, ec] = std::from_chars(head.data(), head.data() + head.size(), index);
      if (ec != std::errc() || end != head.data() + head.size() || index < 0) {
        fail(entry, "expected a CUDA index (0), a slice (0:20GiB), sim:SIZE or cpu[:SIZE]");
      }
      spec.cuda_index = index;
      if (colon != std::string_view::npos) spec.bytes = parse_size_or_fail(entry, tail);
    }
    specs.push_back(spec);
  }
  return specs;
}

Device host_cpu() {
  Device cpu;
  cpu.name = "cpu";
  cpu.kind = DeviceKind::cpu;
  cpu.cores = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream in(line);
    std::string key;
    uint64_t kib = 0;
    in >> key >> kib;
    if (key == "MemTotal:") cpu.total_bytes = kib * 1024;
    if (key == "MemAvailable:") cpu.free_bytes = kib * 1024;
  }
  return cpu;
}

Inventory resolve_devices(const std::vector<DeviceSpec>& specs) {
  Inventory inv;
  inv.cpu = host_cpu();
  const int n_cuda = cuda_device_count();
  if (specs.empty()) {
    for (int i = 0; i < n_cuda; ++i) {
      CudaDeviceInfo info = cuda_device_info(i);
      inv.gpus.push_back({fmt::format("cuda{} ({})", i, info.name), DeviceKind::gpu, i,
                          info.total_bytes, info.free_bytes, 0});
    }
    return inv;
  }
  std::map<int, CudaDeviceInfo> queried;
  std::map<int, int> slices_of;
  std::map<int, uint64_t> budget_of;
  int n_sim = 0;
  for (const DeviceSpec& s : specs) {
    if (s.source == DeviceSpec::Source::cpu) {
      if (s.bytes) inv.cpu.free_bytes = inv.cpu.total_bytes = *s.bytes;
      continue;
    }
    if (s.source == DeviceSpec::Source::simulated) {
      inv.gpus.push_back({fmt::format("sim{}", n_sim++), DeviceKind::gpu, -1, *s.bytes, *s.bytes, 0});
      continue;
    }
    if (s.cuda_index >= n_cuda) {
      throw Error(fmt::format("--devices: CUDA device {} does not exist ({} visible{})",
                              s.cuda_index, n_cuda, n_cuda == 0 ? ": " + cuda_unavailable_reason() : ""));
    }
    if (!queried.count(s.cuda_index)) queried.emplace(s.cuda_index, cuda_device_info(s.cuda_index));
    const CudaDeviceInfo& info = queried.at(s.cuda_index);
    Device d{fmt::format("cuda{} ({})", s.cuda_index, info.name), DeviceKind::gpu, s.cuda_index,
             info.total_bytes, info.free_bytes, 0};
    if (s.bytes) {
      d.name = fmt::format("cuda{} slice {}", s.cuda_index, slices_of[s.cuda_index]++);
      d.free_bytes = *s.bytes;
      budget_of[s.cuda_index] += *s.bytes;
    } else {
      budget_of[s.cuda_index] += info.free_bytes;
    }
    inv.gpus.push_back(d);
  }
  for (const auto& [index, budget] : budget_of) {
    if (budget > queried.at(index).free_bytes) {
      throw Error(fmt::format("--devices: CUDA device {} is given {} in all, it has {} free", index,
                              format_gib(budget), format_gib(queried.at(index).free_bytes)));
    }
  }
  return inv;
}

}  // namespace engine
