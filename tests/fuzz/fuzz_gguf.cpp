// libFuzzer harness: arbitrary bytes through the whole loader (container parse, metadata
// accessors, model validation, the inspect report) and the tokenizer built from the metadata. Any input must end in success or
// engine::Error; sanitizers turn every other outcome into a crash report.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/error.h"
#include "engine/gguf.h"
#include "engine/model_file.h"
#include "engine/model_report.h"
#include "engine/model_spec.h"
#include "engine/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    engine::GgufFile file = engine::GgufFile::parse({data, size}, "fuzz.gguf");
    size_t sink = 0;
    for (const auto& [key, value] : file.metadata()) {
      sink += key.size() + value.to_string().size();
      if (value.is_array()) {
        for (uint64_t i = 0; i < value.size() && i < 16; ++i) {
          sink += value.int_at(i).value_or(0) != 0;
          sink += value.float_at(i).value_or(0.0) != 0.0;
        }
      }
    }
    for (const auto& t : file.tensors()) sink += t.data[0] + t.data[t.n_bytes - 1];
    const engine::ModelFile model = engine::ModelFile::from_file(std::move(file));
    if (model.find("tokenizer.ggml.model") != nullptr) {
      try {
        const auto tok = engine::Tokenizer::from_file(model);
        const auto ids = tok->tokenize("Hello <|im_start|> world 123 \xE2\x96\x81 ok", true, true);
        sink += tok->detokenize(ids, true).size();
      } catch (const engine::Error&) {
      }
    }
    const engine::ModelSpec spec = engine::ModelSpec::from(model);
    sink += engine::model_report_json(model, spec).size();
    sink += engine::model_report_text(model, spec).size();
    if (sink == 1) return 1;  // keep the work observable
  } catch (const engine::Error&) {
  }
  return 0;
}
