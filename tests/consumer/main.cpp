// Embeds libengine through its installed headers: validates a model and prints its shape.
#include <cstdio>
#include <string>

#include <engine/error.h>
#include <engine/model_file.h>
#include <engine/model_spec.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    engine::ModelSpec::from(engine::ModelFile::open("/nonexistent/model.gguf"));
    std::puts("missing file was not reported");
    return 1;
  } catch (const engine::Error& e) {
    std::printf("error as expected: %s\n", e.what());
  }
  try {
    const auto file = engine::ModelFile::open(argv[1]);
    const auto spec = engine::ModelSpec::from(file);
    std::printf("architecture %s layers %u layer0_bytes %llu\n",
                std::string(spec.arch.name).c_str(), spec.hp.n_layer,
                static_cast<unsigned long long>(spec.layer_bytes(0)));
  } catch (const engine::Error& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return 0;
}
