// engine-run: loads a model and runs it. Today it plans the placement (--plan); generation
// arrives with the CPU engine (issue 3) and refuses to start until then.
#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "engine/devices.h"
#include "engine/error.h"
#include "engine/model_file.h"
#include "engine/model_spec.h"
#include "engine/planner.h"

int main(int argc, char** argv) {
  CLI::App app{"Run a GGUF model (today: print its placement plan with --plan)"};
  std::string model, devices, split = "auto", ctx, kv_type = "f16", reserve;
  uint32_t batch = 512;
  bool plan_only = false, json = false;
  app.add_option("--model,-m", model, "GGUF model (any part of a split model)")->required();
  app.add_option("--devices", devices,
                 "0,1 | 0:20GiB,0:20GiB (slices) | sim:24GiB,sim:24GiB | cpu:64GiB (default: all GPUs)");
  app.add_option("--split", split, "auto | even | proportional | none | cpu | 30,34 | 0-29,30-63");
  app.add_option("--ctx", ctx, "context length, or max (default: min(trained, 4096))");
  app.add_option("--kv-type", kv_type, "f16 | q8_0 | f32")->check(CLI::IsMember({"f16", "q8_0", "f32"}));
  app.add_option("--batch", batch, "prompt tokens per forward call");
  app.add_option("--reserve", reserve, "GPU memory kept free: 1GiB, 5%, or one per GPU (1GiB,512MiB)");
  app.add_flag("--plan", plan_only, "print the placement plan and exit");
  app.add_flag("--json", json, "print the plan as one JSON object");
  CLI11_PARSE(app, argc, argv);

  try {
    engine::PlanOptions options;
    options.split = engine::parse_split(split);
    options.kv_type = *engine::parse_kv_type(kv_type);
    options.n_batch = batch;
    if (!reserve.empty()) options.reserve = engine::parse_reserve(reserve);
    if (ctx == "max") {
      options.ctx_max = true;
    } else if (!ctx.empty()) {
      try {
        const long v = std::stol(ctx);
        if (v < 1 || v > (1l << 31)) throw std::out_of_range("ctx");
        options.n_ctx = static_cast<uint32_t>(v);
      } catch (const std::exception&) {
        throw engine::Error(fmt::format("--ctx: '{}' is neither a positive number nor max", ctx));
      }
    }
    const auto inventory =
        engine::resolve_devices(devices.empty() ? std::vector<engine::DeviceSpec>{}
                                                : engine::parse_device_list(devices));
    const auto file = engine::ModelFile::open(model);
    const auto spec = engine::ModelSpec::from(file);
    const engine::Plan plan = engine::make_plan(spec, inventory, options);
    if (json) {
      std::puts(engine::plan_report_json(plan).c_str());
    } else {
      std::fputs(engine::plan_report_text(plan).c_str(), stdout);
    }
    if (!plan_only) {
      fmt::print(stderr, "engine-run: generation is not available yet (the CPU engine is issue 3); "
                         "use --plan\n");
      return 2;
    }
  } catch (const engine::Error& e) {
    fmt::print(stderr, "engine-run: {}\n", e.what());
    return 1;
  }
  return 0;
}
