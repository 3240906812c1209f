// The split planner: places contiguous ranges of transformer layers on GPUs, each sized to that
// GPU's free memory minus a reserve, and only the layers that fit nowhere on the CPU. Exact:
// weights come from the tensor table, KV and scratch buffers from the memory model the backends
// allocate with. Explained: the plan is a table printed before any weight is loaded.
//
// Pipeline order is layer order. The CPU, when it runs layers, takes the first ones: token
// embeddings are looked up on the CPU (straight from the mmap) anyway, so CPU layers add no
// extra transfer, and the output head stays on the GPU that holds the last layer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/devices.h"
#include "engine/memory_model.h"
#include "engine/model_spec.h"

namespace engine {

enum class SplitKind {
  automatic,     // "auto": fill GPUs in order with ranges as large as fit, CPU takes the rest
  even,          // same layer count per GPU
  proportional,  // layer counts in proportion to each GPU's free memory
  single,        // "none": the first GPU only (CPU takes what does not fit)
  cpu,           // no GPU
  counts,        // "30,34": layers per GPU, the remainder on the CPU
  ranges,        // "0-29,30-63": explicit ranges per GPU, the uncovered layers on the CPU
};

struct SplitStrategy {
  SplitKind kind = SplitKind::automatic;
  std::vector<uint32_t> counts;                         // counts
  std::vector<std::pair<uint32_t, uint32_t>> ranges;    // ranges, inclusive
  std::string text;                                     // as the user wrote it
};

// Throws engine::Error "--split: ..." naming the problem.
SplitStrategy parse_split(std::string_view text);

// --reserve: one value for every GPU ("1GiB", "5%") or one per GPU ("1GiB,512MiB").
struct ReserveSpec {
  struct Entry {
    uint64_t bytes = 0;
    double percent = 0;  // of the device's total memory, when > 0
  };
  std::vector<Entry> entries;  // empty: the default
};

ReserveSpec parse_reserve(std::string_view text);  // throws "--reserve: ..."

// Default GPU reserve: max(512 MiB, 2% of total), see docs/planner.md.
uint64_t reserve_bytes(const ReserveSpec& spec, size_t gpu_index, uint64_t total_bytes);

struct PlanOptions {
  SplitStrategy split;
  uint32_t n_ctx = 0;    // 0: min(trained context, 4096)
  bool ctx_max = false;  // --ctx max
  KvType kv_type = KvType::f16;
  uint32_t n_batch = 512;   // prompt tokens per forward call
  uint32_t n_ubatch = 0;    // the micro-batch through the stages (0: n_batch), as ContextOptions's;
                            // every buffer is counted at it (stage_micro_batch)
  uint32_t n_outputs = 1;
  ReserveSpec reserve;
  uint64_t cpu_reserve = 1ull << 30;  // RAM left to the OS and the rest of the process
  // When layers stay on the CPU, multiply their prompt batches on the first GPU that holds
  // layers (memory_model.h: prompt offload), counting its buffers there and its pinned staging
  // on the CPU; a manual split that has no room for them goes without.
  bool prompt_offload = true;
};

struct DevicePlan {
  Device device;
  std::optional<std::pair<uint32_t, uint32_t>> layers;  // inclusive range, none if no layers
  bool output = false;  // holds the output norm and head
  bool input = false;   // holds the token embeddings (the CPU, read from the mmap)
  uint64_t weight_bytes = 0;
  uint64_t kv_bytes = 0;
  uint64_t compute_bytes = 0;
  // The prompt offload's buffers: on the GPU that multiplies the CPU layers' prompt batches, its
  // device buffers; on the CPU, the pinned staging (prompt_offload_device_bytes, _host_bytes).
  uint64_t offload_bytes = 0;
  uint64_t reserve_bytes = 0;

  bool used() const { return layers.has_value() || output || input; }
  // What the device must have free; an unused device needs nothing (not even its reserve).
  uint64_t needed_bytes() const {
    return used() ? weight_bytes + kv_bytes + compute_bytes + offload_bytes + reserve_bytes : 0;
  }
  int64_t free_after_bytes() const {
    return static_cast<int64_t>(device.free_bytes) - static_cast<int64_t>(needed_bytes());
  }
};

struct Plan {
  std::string model;  // file path
  std::string split;  // strategy as written
  std::vector<DevicePlan> devices;  // GPUs in the order given, then the CPU
  uint32_t n_layer = 0;
  uint32_t n_layer_gpu = 0;
  uint32_t n_layer_cpu = 0;
  uint32_t n_ctx = 0;
  uint32_t n_batch = 0;
  uint32_t n_ubatch = 0;  // the micro-batch the buffers are counted at (stage_micro_batch)
  KvType kv_type = KvType::f16;
  // The GPU (index into devices) that multiplies the CPU layers' prompt batches; -1 for none.
  int prompt_offload_gpu = -1;
  uint32_t max_ctx_full_offload = 0;  // 0 when the model never fits on the GPUs entirely
  // The same with a q8_0 KV cache, when the plan's is another type and the heads allow Q8_0 blocks
  // (head_dim % 32 == 0); else 0.
  uint32_t max_ctx_full_offload_q8_0 = 0;

  bool output_on_gpu() const;
};

// Plans or throws engine::Error; when a device is over-committed or the model does not fit the
// GPUs plus RAM, the message has one line per device: needed, free, reserve, short by.
Plan make_plan(const ModelSpec& model, const Inventory& inventory, const PlanOptions& options);

// The devices as `plan` leaves them once its allocations are made: each one's free bytes less
// what the plan needs of it besides its reserve (a plan against the result keeps its own). For
// placing a second model beside the first, as a speculative decoding draft.
Inventory inventory_after(const Inventory& inventory, const Plan& plan);

std::string plan_report_text(const Plan& plan);
// Keys: devices [{name, kind, free_bytes, reserve_bytes, first_layer, last_layer, output,
// weight_bytes, kv_bytes, compute_bytes, offload_bytes, needed_bytes, free_after_bytes}], n_layer,
// n_layer_gpu, n_layer_cpu, output_on_gpu, prompt_offload_gpu (a device name, or null), n_ctx,
// n_batch, n_ubatch, kv_type, split, max_ctx_full_offload, max_ctx_full_offload_q8_0.
std::string plan_report_json(const Plan& plan);

}  // namespace engine
