// The plan as a table (printed before loading) and as JSON.
#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/byte_size.h"
#include "engine/planner.h"

namespace engine {
namespace {

std::string range_text(const DevicePlan& d) {
  std::string s = d.layers ? fmt::format("{}-{}", d.layers->first, d.layers->second) : "-";
  if (d.output) s += " +out";
  return s;
}

double gib(uint64_t bytes) { return double(bytes) / 1073741824.0; }

}  // namespace

std::string plan_report_text(const Plan& plan) {
  const std::string micro = plan.n_ubatch && plan.n_ubatch != plan.n_batch
                                ? fmt::format(" (micro-batch {})", plan.n_ubatch) : std::string();
  std::string out = fmt::format("plan for {}: split {}, ctx {}, batch {}{}, KV {}\n", plan.model,
                                plan.split, plan.n_ctx, plan.n_batch, micro, kv_type_name(plan.kv_type));
  out += fmt::format("{:<28} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}\n", "device",
                     "layers", "weights", "KV", "compute", "offload", "reserve", "free", "needed",
                     "free after");
  for (const auto& d : plan.devices) {
    out += fmt::format("{:<28} {:>10} {:>9.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>10.2f}\n",
                       d.device.name.substr(0, 28), range_text(d), gib(d.weight_bytes),
                       gib(d.kv_bytes), gib(d.compute_bytes), gib(d.offload_bytes),
                       d.used() ? gib(d.reserve_bytes) : 0.0, gib(d.device.free_bytes), gib(d.needed_bytes()),
                       double(d.free_after_bytes()) / 1073741824.0);
  }
  out += "(GiB; the CPU holds the token embeddings, read from the mmap)\n";
  if (plan.prompt_offload_gpu >= 0) {
    out += fmt::format("prompt batches of {}+ tokens through the CPU's layers are multiplied on {} (offload "
                       "column; --no-prompt-offload frees it)\n",
                       kPromptOffloadMinBatch, plan.devices[plan.prompt_offload_gpu].device.name);
  }
  size_t gpus_used = 0;
  for (const auto& d : plan.devices) gpus_used += d.device.kind == DeviceKind::gpu && d.used();
  const uint32_t with_output = plan.n_layer + 1;
  const uint32_t on_gpu = plan.n_layer_gpu + (plan.output_on_gpu() ? 1 : 0);
  out += fmt::format("{}/{} layers ({} blocks + output) on {} GPU{}, {} on CPU, ", on_gpu,
                     with_output, plan.n_layer, gpus_used, gpus_used == 1 ? "" : "s",
                     with_output - on_gpu);
  const bool any_gpu = std::any_of(plan.devices.begin(), plan.devices.end(),
                                  [](const DevicePlan& d) { return d.device.kind == DeviceKind::gpu; });
  out += !any_gpu ? std::string("no GPU\n")
         : plan.max_ctx_full_offload > 0
             ? fmt::format("max ctx {} with every layer on the GPUs\n", plan.max_ctx_full_offload)
             : std::string("the model does not fit on the GPUs at any context\n");
  // Layers left to the CPU that a q8_0 cache would bring onto the GPUs at this context.
  if (plan.split == "auto" && on_gpu < with_output && plan.max_ctx_full_offload_q8_0 >= plan.n_ctx) {
    out += fmt::format("with --kv-type q8_0 every layer fits on the GPUs at ctx {} (max ctx {})\n", plan.n_ctx,
                       plan.max_ctx_full_offload_q8_0);
  }
  return out;
}

std::string plan_report_json(const Plan& plan) {
  nlohmann::ordered_json j;
  j["model"] = plan.model;
  j["split"] = plan.split;
  j["n_ctx"] = plan.n_ctx;
  j["n_batch"] = plan.n_batch;
  j["n_ubatch"] = plan.n_ubatch;
  j["kv_type"] = kv_type_name(plan.kv_type);
  auto devices = nlohmann::ordered_json::array();
  for (const auto& d : plan.devices) {
    nlohmann::ordered_json e;
    e["name"] = d.device.name;
    e["kind"] = d.device.kind == DeviceKind::gpu ? "gpu" : "cpu";
    e["total_bytes"] = d.device.total_bytes;
    e["free_bytes"] = d.device.free_bytes;
    e["reserve_bytes"] = d.used() ? d.reserve_bytes : 0;
    e["first_layer"] = d.layers ? nlohmann::ordered_json(d.layers->first) : nlohmann::ordered_json();
    e["last_layer"] = d.layers ? nlohmann::ordered_json(d.layers->second) : nlohmann::ordered_json();
    e["output"] = d.output;
    e["weight_bytes"] = d.weight_bytes;
    e["kv_bytes"] = d.kv_bytes;
    e["compute_bytes"] = d.compute_bytes;
    e["offload_bytes"] = d.offload_bytes;
    e["needed_bytes"] = d.needed_bytes();
    e["free_after_bytes"] = d.free_after_bytes();
    devices.push_back(std::move(e));
  }
  j["devices"] = std::move(devices);
  j["n_layer"] = plan.n_layer;
  j["n_layer_gpu"] = plan.n_layer_gpu;
  j["n_layer_cpu"] = plan.n_layer_cpu;
  j["output_on_gpu"] = plan.output_on_gpu();
  j["prompt_offload_gpu"] = plan.prompt_offload_gpu >= 0
                                ? nlohmann::ordered_json(plan.devices[plan.prompt_offload_gpu].device.name)
                                : nlohmann::ordered_json();
  j["max_ctx_full_offload"] = plan.max_ctx_full_offload;
  j["max_ctx_full_offload_q8_0"] = plan.max_ctx_full_offload_q8_0;
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace engine
