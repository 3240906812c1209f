// The flags that say where a tool's layers go and how its stages pass work on, shared by
// engine-run and engine-perplexity: --devices, --split, --reserve, --no-prompt-offload, --ubatch
// and --transport, read into the library's planner options and device inventory (the last two
// also into its ContextOptions). Presentation only; the planner (engine/planner.h) does the placing.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/devices.h"
#include "engine/planner.h"

namespace engine::tools {

struct PlacementFlags {
  std::string devices, split = "auto", reserve;
  bool no_prompt_offload = false;
  uint32_t ubatch = 0;  // 0: the batch
  std::string transport = "auto";
};

inline void add_placement_flags(CLI::App& app, PlacementFlags& f) {
  app.add_option("--devices", f.devices,
                 "0,1 | 0:20GiB,0:20GiB (slices) | sim:24GiB,sim:24GiB | cpu:64GiB (default: all GPUs)");
  app.add_option("--split", f.split, "auto | even | proportional | none | cpu | 30,34 | 0-29,30-63");
  app.add_option("--reserve", f.reserve, "GPU memory kept free: 1GiB, 5%, or one per GPU (1GiB,512MiB)");
  app.add_flag("--no-prompt-offload", f.no_prompt_offload,
               "keep the prompt batches of layers left to the CPU there (default: a GPU multiplies them)");
  app.add_option("--ubatch", f.ubatch, "prompt micro-batch that flows through the stages (default: --batch)")
      ->check(CLI::Range(1u, 65536u));
  app.add_option("--transport", f.transport,
                 "between two GPU stages: auto (peer), peer, nccl or host; stages on the CPU always connect "
                 "through host memory")
      ->check(CLI::IsMember({"auto", "peer", "nccl", "host"}));
}

// The planner options the flags set (split, reserve, prompt offload, micro-batch); the caller
// sets the rest.
// Throws engine::Error naming the flag for a bad value.
inline PlanOptions placement_options(const PlacementFlags& f) {
  PlanOptions o;
  o.split = parse_split(f.split);
  o.prompt_offload = !f.no_prompt_offload;
  o.n_ubatch = f.ubatch;
  if (!f.reserve.empty()) o.reserve = parse_reserve(f.reserve);
  return o;
}

// The devices --devices names (default: every visible GPU, and the CPU).
inline Inventory placement_inventory(const PlacementFlags& f) {
  return resolve_devices(f.devices.empty() ? std::vector<DeviceSpec>{} : parse_device_list(f.devices));
}

}  // namespace engine::tools
