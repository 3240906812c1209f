// Test helper for tests/python: runs the engine's reference (de)quantizers on raw files so the
// gguf Python package can check them.
//   engine-quant-tool dequantize TYPE IN OUT   IN: ggml blocks, OUT: float32
//   engine-quant-tool quantize TYPE IN OUT     IN: float32, OUT: ggml blocks
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/ggml_type.h"
#include "engine/quantize.h"

namespace {

std::vector<char> read_all(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_all(const char* path, const void* data, size_t n) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s dequantize|quantize TYPE IN OUT\n", argv[0]);
    return 2;
  }
  const std::string op = argv[1];
  const auto type = engine::parse_type_name(argv[2]);
  if (!type) {
    std::fprintf(stderr, "unknown type %s\n", argv[2]);
    return 2;
  }
  const engine::TypeTraits& tr = engine::traits(*type);
  const auto in = read_all(argv[3]);
  try {
    if (op == "dequantize") {
      const int64_t n = static_cast<int64_t>(in.size() / tr.block_bytes * tr.block_size);
      std::vector<float> out(n);
      engine::dequantize_row(*type, in.data(), out.data(), n);
      write_all(argv[4], out.data(), out.size() * sizeof(float));
    } else if (op == "quantize") {
      const int64_t n = static_cast<int64_t>(in.size() / sizeof(float));
      std::vector<uint8_t> out(engine::type_bytes(*type, n));
      engine::quantize_row(*type, reinterpret_cast<const float*>(in.data()), out.data(), n);
      write_all(argv[4], out.data(), out.size());
    } else {
      std::fprintf(stderr, "unknown operation %s\n", op.c_str());
      return 2;
    }
  } catch (const engine::Error& e) {
    std::fprintf(stderr, "engine-quant-tool: %s\n", e.what());
    return 1;
  }
  return 0;
}
