// Embeds libengine through its installed headers: loads a model, tokenizes a prompt, generates a
// few tokens greedily while streaming their text, and shows the error mechanism.
#include <cstdio>
#include <string>

#include <engine/engine.h>
#include <engine/error.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    engine::Model::load("/nonexistent/model.gguf");
    std::puts("missing file was not reported");
    return 1;
  } catch (const engine::Error& e) {
    std::printf("error as expected: %s\n", e.what());
  }
  try {
    const auto model = engine::Model::load(argv[1]);
    const auto& spec = model->spec();
    std::printf("architecture %s layers %u layer0_bytes %llu\n", std::string(spec.arch.name).c_str(),
                spec.hp.n_layer, static_cast<unsigned long long>(spec.layer_bytes(0)));
    engine::ContextOptions options;
    options.n_ctx = 256;
    engine::Context ctx(model, options);
    const auto prompt = model->tokenizer()->tokenize("Hello there", true, false);
    engine::SamplingParams sampling;
    sampling.greedy = true;
    engine::TokenStreamer stream(model->tokenizer(), false);
    std::string text;
    const auto out = ctx.generate(prompt, 8, sampling, [&](int32_t token) {
      text += stream.push(token);
      return true;
    });
    std::printf("generated %zu tokens after a prompt of %zu (%zu bytes of text)\n", out.size(),
                prompt.size(), text.size());
  } catch (const engine::Error& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return 0;
}
