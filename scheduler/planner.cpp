#include "engine/planner.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "engine/byte_size.h"
#include "engine/error.h"

namespace engine {
namespace {

using Range = std::pair<uint32_t, uint32_t>;  // inclusive

// Where each layer and the output head go; the CPU is the last "device".
struct Placement {
  std::vector<std::optional<Range>> gpu_layers;
  std::optional<Range> cpu_layers;
  int output_gpu = -1;  // -1: the output head is on the CPU
  int offload_gpu = -1;  // the GPU multiplying the CPU layers' prompt batches; -1: none
};

uint32_t count(const std::optional<Range>& r) { return r ? r->second - r->first + 1 : 0; }

class Planner {
 public:
  Planner(const ModelSpec& model, const Inventory& inv, const PlanOptions& opt)
      : m_(model), inv_(inv), opt_(opt), n_(model.hp.n_layer) {
    // Prefix sums of layer bytes: as stored (the CPU reads them from the mmap) and as a GPU stage
    // uploads them (gpu_layer_bytes: vectors as f32, every tensor aligned).
    prefix_.assign(n_ + 1, 0);
    gpu_prefix_.assign(n_ + 1, 0);
    for (uint32_t l = 0; l < n_; ++l) {
      prefix_[l + 1] = prefix_[l] + model.layer_bytes(l);
      gpu_prefix_[l + 1] = gpu_prefix_[l] + gpu_layer_bytes(model, l);
    }
    output_bytes_ = model.output_bytes() + (model.hp.tied_output ? model.input_bytes() : 0);
    gpu_rope_bytes_ = gpu_rope_bytes(model);
    gpu_output_bytes_ = gpu_output_bytes(model);
  }

  uint32_t n_layer() const { return n_; }
  size_t n_gpus() const { return inv_.gpus.size(); }

  // `offload`: the CPU's layers, when this GPU multiplies their prompt batches.
  DevicePlan gpu_plan(size_t i, const std::optional<Range>& layers, bool output, uint32_t ctx,
                      const std::optional<Range>& offload = std::nullopt) const {
    DevicePlan d;
    d.device = inv_.gpus[i];
    d.layers = layers;
    d.output = output;
    d.reserve_bytes = reserve_bytes(opt_.reserve, i, d.device.total_bytes);
    fill(d, ctx);
    if (offload) d.offload_bytes = prompt_offload_device_bytes(m_, *offload, micro_batch(ctx));
    return d;
  }

  DevicePlan cpu_plan(const std::optional<Range>& layers, bool output, uint32_t ctx, bool offload) const {
    DevicePlan d;
    d.device = inv_.cpu;
    d.layers = layers;
    d.output = output;
    d.input = true;  // embeddings are looked up on the CPU, from the mmap
    d.reserve_bytes = opt_.cpu_reserve;
    fill(d, ctx);
    d.weight_bytes += m_.input_bytes();
    if (offload && layers) d.offload_bytes = prompt_offload_host_bytes(m_, *layers, micro_batch(ctx));
    return d;
  }

  std::vector<DevicePlan> evaluate(const Placement& p, uint32_t ctx) const {
    std::vector<DevicePlan> plans;
    for (size_t i = 0; i < n_gpus(); ++i) {
      const bool offload = p.offload_gpu == static_cast<int>(i);
      plans.push_back(gpu_plan(i, p.gpu_layers[i], p.output_gpu == static_cast<int>(i), ctx,
                               offload ? p.cpu_layers : std::nullopt));
    }
    plans.push_back(cpu_plan(p.cpu_layers, p.output_gpu < 0, ctx, p.offload_gpu >= 0));
    return plans;
  }

  static bool fits(const DevicePlan& d) { return !d.used() || d.needed_bytes() <= d.device.free_bytes; }
  static bool fits(const std::vector<DevicePlan>& plans) {
    return std::all_of(plans.begin(), plans.end(), [](const DevicePlan& d) { return fits(d); });
  }
  bool fits(const Placement& p, uint32_t ctx) const { return fits(evaluate(p, ctx)); }

  // Greedy fill of layers [start, n) into the first `n_used` GPUs in order, each taking as many
  // consecutive layers as fit; the GPU taking the last layer must also fit the output head, and
  // the first GPU that takes layers the prompt offload for the CPU's [0, start) (when asked).
  std::optional<Placement> pack(uint32_t start, size_t n_used, uint32_t ctx) const {
    Placement p;
    p.gpu_layers.assign(n_gpus(), std::nullopt);
    if (start > 0) p.cpu_layers = Range{0, start - 1};
    std::optional<Range> offload = opt_.prompt_offload ? p.cpu_layers : std::nullopt;
    uint32_t cur = start;
    for (size_t i = 0; i < n_used && p.output_gpu < 0; ++i) {
      uint32_t k = 0;
      while (cur + k < n_ && fits(gpu_plan(i, Range{cur, cur + k}, false, ctx, offload))) ++k;
      if (cur + k == n_) {
        while (k > 0 && !fits(gpu_plan(i, Range{cur, cur + k - 1}, true, ctx, offload))) --k;
        if (k > 0 && cur + k == n_) p.output_gpu = static_cast<int>(i);
      }
      if (k > 0) {
        p.gpu_layers[i] = Range{cur, cur + k - 1};
        if (offload) p.offload_gpu = static_cast<int>(i);
        offload.reset();
      }
      cur += k;
    }
    if (cur < n_ || p.output_gpu < 0) return std::nullopt;
    return p;
  }

  // A manual placement's prompt offload: on the GPU of the layer after the CPU's range (or before
  // it, when the CPU takes the last layers), if the placement still fits with it.
  Placement with_prompt_offload(Placement p, uint32_t ctx) const {
    if (!opt_.prompt_offload || !p.cpu_layers) return p;
    const auto gpu_of = [&](uint32_t layer) {
      for (size_t i = 0; i < n_gpus(); ++i) {
        const auto& r = p.gpu_layers[i];
        if (r && r->first <= layer && layer <= r->second) return static_cast<int>(i);
      }
      return -1;
    };
    const auto [first, last] = *p.cpu_layers;
    p.offload_gpu = last + 1 < n_ ? gpu_of(last + 1) : -1;
    if (p.offload_gpu < 0 && first > 0) p.offload_gpu = gpu_of(first - 1);
    if (p.offload_gpu >= 0 && !fits(p, ctx)) p.offload_gpu = -1;
    return p;
  }

  // "auto" over the first n_used GPUs: the fewest layers on the CPU, taken from the front.
  Placement automatic(size_t n_used, uint32_t ctx) const {
    for (uint32_t start = 0; start < n_ && n_used > 0; ++start) {
      if (auto p = pack(start, n_used, ctx)) return *p;
    }
    return all_on_cpu();
  }

  Placement all_on_cpu() const {
    Placement p;
    p.gpu_layers.assign(n_gpus(), std::nullopt);
    p.cpu_layers = Range{0, n_ - 1};
    return p;
  }

  // Consecutive ranges of the given sizes on GPUs 0.., after `n - sum` CPU layers at the front.
  Placement from_counts(const std::vector<uint32_t>& counts) const {
    const uint64_t sum = std::accumulate(counts.begin(), counts.end(), uint64_t{0});
    if (counts.size() > n_gpus()) {
      throw Error(fmt::format("--split: {} layer counts for {} GPUs", counts.size(), n_gpus()));
    }
    if (sum > n_) throw Error(fmt::format("--split: {} layers given, the model has {}", sum, n_));
    Placement p;
    p.gpu_layers.assign(n_gpus(), std::nullopt);
    uint32_t cur = n_ - static_cast<uint32_t>(sum);
    if (cur > 0) p.cpu_layers = Range{0, cur - 1};
    for (size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] == 0) continue;
      p.gpu_layers[i] = Range{cur, cur + counts[i] - 1};
      cur += counts[i];
      if (cur == n_) p.output_gpu = static_cast<int>(i);
    }
    return p;
  }

  Placement from_ranges(const std::vector<Range>& ranges) const {
    if (ranges.size() > n_gpus()) {
      throw Error(fmt::format("--split: {} ranges for {} GPUs", ranges.size(), n_gpus()));
    }
    std::vector<int> owner(n_, -1);
    Placement p;
    p.gpu_layers.assign(n_gpus(), std::nullopt);
    for (size_t i = 0; i < ranges.size(); ++i) {
      const auto [a, b] = ranges[i];
      if (b >= n_) {
        throw Error(fmt::format("--split: range {}-{} goes past the last layer {}", a, b, n_ - 1));
      }
      for (uint32_t l = a; l <= b; ++l) {
        if (owner[l] >= 0) {
          throw Error(fmt::format("--split: layer {} is in two ranges ({} and {})", l, owner[l], i));
        }
        owner[l] = static_cast<int>(i);
      }
      p.gpu_layers[i] = ranges[i];
    }
    // Uncovered layers go to the CPU and must form one contiguous range.
    std::optional<Range> cpu;
    for (uint32_t l = 0; l < n_; ++l) {
      if (owner[l] >= 0) continue;
      if (cpu && cpu->second + 1 != l) {
        throw Error(fmt::format("--split: layers {} and {} are uncovered but not adjacent; the CPU "
                                "takes one contiguous range",
                                cpu->second, l));
      }
      cpu = cpu ? Range{cpu->first, l} : Range{l, l};
    }
    p.cpu_layers = cpu;
    // The output head goes with the GPU of the highest layer.
    for (uint32_t l = n_; l-- > 0;) {
      if (owner[l] >= 0) {
        p.output_gpu = owner[l];
        break;
      }
    }
    return p;
  }

  std::vector<uint32_t> even_counts() const {
    std::vector<uint32_t> c(n_gpus(), n_ / static_cast<uint32_t>(n_gpus()));
    for (uint32_t i = 0; i < n_ % n_gpus(); ++i) ++c[i];
    return c;
  }

  // Largest remainder apportionment of the layers by free memory.
  std::vector<uint32_t> proportional_counts() const {
    uint64_t total = 0;
    for (const auto& g : inv_.gpus) total += g.free_bytes;
    std::vector<uint32_t> c(n_gpus());
    std::vector<std::pair<double, size_t>> remainders;
    uint32_t given = 0;
    for (size_t i = 0; i < n_gpus(); ++i) {
      const double share = double(n_) * double(inv_.gpus[i].free_bytes) / double(total);
      c[i] = static_cast<uint32_t>(share);
      given += c[i];
      remainders.emplace_back(share - c[i], i);
    }
    std::stable_sort(remainders.begin(), remainders.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t k = 0; given < n_; ++k, ++given) ++c[remainders[k].second];
    return c;
  }

  // Largest context in [1, cap] at which `placement` fits; 0 if none does.
  uint32_t max_ctx(const Placement& placement, uint32_t cap) const {
    if (!fits(placement, 1)) return 0;
    uint32_t lo = 1, hi = cap;
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo + 1) / 2;
      if (fits(placement, mid)) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  // Largest context in [1, cap] at which auto keeps every layer on the GPUs; 0 if none does.
  uint32_t max_ctx_full_offload(uint32_t cap) const {
    auto full = [&](uint32_t ctx) { return n_gpus() > 0 && pack(0, n_gpus(), ctx).has_value(); };
    if (!full(1)) return 0;
    uint32_t lo = 1, hi = cap;
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo + 1) / 2;
      if (full(mid)) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

 private:
  uint32_t micro_batch(uint32_t ctx) const { return stage_micro_batch(opt_.n_batch, opt_.n_ubatch, ctx); }

  void fill(DevicePlan& d, uint32_t ctx) const {
    const uint32_t layers = count(d.layers);
    const bool gpu = d.device.kind == DeviceKind::gpu;
    if (gpu) {  // what the GPU stage uploads: the same as gpu_weight_bytes, from prefix sums
      if (d.layers) d.weight_bytes = gpu_prefix_[d.layers->second + 1] - gpu_prefix_[d.layers->first] + gpu_rope_bytes_;
      if (d.output) d.weight_bytes += gpu_output_bytes_;
    } else {
      if (d.layers) d.weight_bytes = prefix_[d.layers->second + 1] - prefix_[d.layers->first];
      if (d.output) d.weight_bytes += output_bytes_;
    }
    d.kv_bytes = gpu ? stage_kv_bytes(m_.hp, opt_.kv_type, ctx, layers)
                     : cpu_stage_kv_bytes(m_.hp, opt_.kv_type, ctx, layers);
    if (layers > 0 || d.output || d.device.kind == DeviceKind::cpu) {
      StageShape shape{micro_batch(ctx), ctx, opt_.n_outputs, layers > 0, d.output, gpu, opt_.kv_type};
      d.compute_bytes = stage_buffer_bytes(m_.hp, shape);
    }
  }

  const ModelSpec& m_;
  const Inventory& inv_;
  const PlanOptions& opt_;
  uint32_t n_;
  std::vector<uint64_t> prefix_, gpu_prefix_;
  uint64_t output_bytes_ = 0, gpu_output_bytes_ = 0, gpu_rope_bytes_ = 0;
};

std::string shortfall_report(const std::string& headline, const std::vector<DevicePlan>& plans) {
  std::string msg = headline;
  for (const auto& d : plans) {
    if (!d.used()) continue;
    const int64_t after = d.free_after_bytes();
    msg += fmt::format("\n  {}: needed {}, free {}, reserve {}, {}", d.device.name,
                       format_gib(d.needed_bytes()), format_gib(d.device.free_bytes),
                       format_gib(d.reserve_bytes),
                       after < 0 ? "short by " + format_gib(static_cast<uint64_t>(-after))
                                 : "fits with " + format_gib(static_cast<uint64_t>(after)) + " to spare");
  }
  return msg;
}

}  // namespace

bool Plan::output_on_gpu() const {
  return std::any_of(devices.begin(), devices.end(),
                     [](const DevicePlan& d) { return d.output && d.device.kind == DeviceKind::gpu; });
}

Inventory inventory_after(const Inventory& inventory, const Plan& plan) {
  Inventory left = inventory;
  auto take = [](Device& device, const DevicePlan& used) {
    const uint64_t taken = used.needed_bytes() - (used.used() ? used.reserve_bytes : 0);
    device.free_bytes -= std::min(device.free_bytes, taken);
  };
  // The plan's devices are the inventory's GPUs in order, then the CPU.
  if (plan.devices.size() != left.gpus.size() + 1) {
    throw Error(fmt::format("inventory_after: a plan of {} devices against an inventory of {}", plan.devices.size(),
                            left.gpus.size() + 1));
  }
  for (size_t i = 0; i < left.gpus.size(); ++i) take(left.gpus[i], plan.devices[i]);
  take(left.cpu, plan.devices.back());
  return left;
}

Plan make_plan(const ModelSpec& model, const Inventory& inv, const PlanOptions& opt) {
  const SplitStrategy& split = opt.split;
  const size_t n_gpus = inv.gpus.size();
  if (opt.reserve.entries.size() > 1 && opt.reserve.entries.size() != n_gpus) {
    throw Error(fmt::format("--reserve: {} values for {} GPUs", opt.reserve.entries.size(), n_gpus));
  }
  if (n_gpus == 0 && split.kind != SplitKind::cpu && split.kind != SplitKind::automatic) {
    throw Error(fmt::format("--split {}: no GPU to split over (use --devices, or --split cpu)",
                            split.text));
  }
  if (opt.n_batch == 0) throw Error("--batch: must be at least 1");
  Planner planner(model, inv, opt);
  const uint32_t n_train = model.hp.n_ctx_train;
  const uint32_t default_ctx = std::min<uint32_t>(n_train, 4096);
  uint32_t ctx = opt.n_ctx ? opt.n_ctx : default_ctx;

  Placement placement;
  switch (split.kind) {
    case SplitKind::automatic:
    case SplitKind::single: {
      const size_t used = split.kind == SplitKind::single ? std::min<size_t>(1, n_gpus) : n_gpus;
      if (opt.ctx_max) {
        // Place for the largest context that keeps every layer on these GPUs, if there is one.
        uint32_t lo = 0, hi = n_train;
        while (lo < hi) {
          const uint32_t mid = lo + (hi - lo + 1) / 2;
          if (used > 0 && planner.pack(0, used, mid)) lo = mid; else hi = mid - 1;
        }
        ctx = lo > 0 ? lo : default_ctx;
      }
      placement = planner.automatic(used, ctx);
      break;
    }
    case SplitKind::cpu: placement = planner.all_on_cpu(); break;
    case SplitKind::even: placement = planner.from_counts(planner.even_counts()); break;
    case SplitKind::proportional: placement = planner.from_counts(planner.proportional_counts()); break;
    case SplitKind::counts: placement = planner.from_counts(split.counts); break;
    case SplitKind::ranges: placement = planner.from_ranges(split.ranges); break;
  }
  const bool manual = split.kind != SplitKind::automatic && split.kind != SplitKind::single &&
                      split.kind != SplitKind::cpu;
  if (manual) placement = planner.with_prompt_offload(std::move(placement), ctx);
  if (opt.ctx_max) {
    // The largest context at which the chosen placement still fits.
    ctx = planner.max_ctx(placement, n_train);
    if (ctx == 0) {
      throw Error(shortfall_report(
          fmt::format("{}: --split {} does not fit even at a context of 1 token:", model.file.path(),
                      split.text),
          planner.evaluate(placement, 1)));
    }
  }

  Plan plan;
  plan.model = model.file.path();
  plan.split = split.text;
  plan.devices = planner.evaluate(placement, ctx);
  plan.prompt_offload_gpu = placement.offload_gpu;
  plan.n_layer = planner.n_layer();
  plan.n_ctx = ctx;
  plan.n_batch = opt.n_batch;
  plan.n_ubatch = stage_micro_batch(opt.n_batch, opt.n_ubatch, ctx);
  plan.kv_type = opt.kv_type;
  for (const auto& d : plan.devices) {
    (d.device.kind == DeviceKind::gpu ? plan.n_layer_gpu : plan.n_layer_cpu) += count(d.layers);
  }
  plan.max_ctx_full_offload = planner.max_ctx_full_offload(n_train);
  if (opt.kv_type != KvType::q8_0 && kv_type_fits(KvType::q8_0, model.hp.head_dim) && n_gpus > 0) {
    // The same GPUs with a q8_0 cache (34 bytes per 32 values): what the plan can suggest.
    PlanOptions q8 = opt;
    q8.kv_type = KvType::q8_0;
    plan.max_ctx_full_offload_q8_0 = Planner(model, inv, q8).max_ctx_full_offload(n_train);
  }
  if (!Planner::fits(plan.devices)) {
    throw Error(shortfall_report(
        fmt::format("{}: {} at ctx {} (KV {}):", model.file.path(),
                    manual ? fmt::format("--split {} over-commits a device", split.text)
                           : std::string("the model does not fit the GPUs plus RAM"),
                    ctx, kv_type_name(opt.kv_type)),
        plan.devices));
  }
  return plan;
}

}  // namespace engine
