// Test helper for tests/python/test_forward_vs_numpy.py: runs the engine's forward pass through
// the public API and writes logits as float32.
//   engine-forward-tool MODEL KV_TYPE batched OUT id,id,...   logits after the whole prompt
//                                                             (one eval call, n_batch 512)
//   engine-forward-tool MODEL KV_TYPE each OUT id,id,...      logits after every token, one eval
//                                                             call per token ([n][n_vocab])
//   engine-forward-tool MODEL KV_TYPE all OUT id,id,...       logits after every token, one
//                                                             eval_all call (a prompt batch)
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/error.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s MODEL KV_TYPE batched|each|all OUT IDS\n", argv[0]);
    return 2;
  }
  try {
    std::vector<int32_t> ids;
    for (std::string s = argv[5]; !s.empty();) {
      const size_t comma = s.find(',');
      ids.push_back(std::stoi(s.substr(0, comma)));
      s = comma == std::string::npos ? "" : s.substr(comma + 1);
    }
    auto model = engine::Model::load(argv[1]);
    engine::ContextOptions options;
    options.kv_type = *engine::parse_kv_type(argv[2]);
    engine::Context ctx(model, options);
    std::ofstream out(argv[4], std::ios::binary);
    auto write = [&](std::span<const float> logits) {
      out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size_bytes()));
    };
    if (std::string(argv[3]) == "batched") {
      write(ctx.eval(ids));
    } else if (std::string(argv[3]) == "all") {
      write(ctx.eval_all(ids));
    } else {
      for (int32_t id : ids) write(ctx.eval(std::span<const int32_t>(&id, 1)));
    }
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "engine-forward-tool: %s\n", e.what());
    return 1;
  }
  return 0;
}
