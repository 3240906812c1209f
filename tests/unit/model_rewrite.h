// Rewrites a GGUF model with deliberate changes (dropped or replaced keys and tensors, reshaped
// tensors), to craft models that are wrong in exactly one way.
#pragma once

#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "engine/gguf_writer.h"

namespace engine::test {

struct Tweaks {
  std::set<std::string> drop_keys;
  std::set<std::string> drop_tensors;
  std::function<void(GgufWriter&)> add_keys;                // after the kept keys
  std::map<std::string, std::vector<int64_t>> reshape;      // data zero-filled
  std::vector<std::pair<std::string, std::vector<int64_t>>> add_f32_tensors;
  std::function<bool(const TensorInfo&)> keep_tensor;       // default: all not dropped
  bool keep_metadata = true;                                // false: split.* keys only
};

inline void rewrite_model(const std::string& src_path, const std::string& dst_path,
                          const Tweaks& tw) {
  GgufFile src = GgufFile::open(src_path);
  GgufWriter w(src.alignment());
  for (const auto& [key, value] : src.metadata()) {
    if (key == "general.alignment" || tw.drop_keys.count(std::string(key))) continue;
    if (!tw.keep_metadata) continue;
    w.add_value(std::string(key), value);
  }
  if (tw.add_keys) tw.add_keys(w);
  for (const TensorInfo& t : src.tensors()) {
    const std::string name(t.name);
    if (tw.drop_tensors.count(name)) continue;
    if (tw.keep_tensor && !tw.keep_tensor(t)) continue;
    std::vector<int64_t> ne(t.ne.begin(), t.ne.begin() + t.n_dims);
    auto re = tw.reshape.find(name);
    if (re != tw.reshape.end()) {
      w.add_tensor(name, t.type, re->second, [](int64_t, int64_t, uint8_t*) {});
      continue;
    }
    const uint64_t row_bytes = type_bytes(t.type, t.ne[0]);
    const uint8_t* data = t.data;
    w.add_tensor(name, t.type, ne, [data, row_bytes](int64_t r0, int64_t n, uint8_t* out) {
      std::memcpy(out, data + r0 * row_bytes, n * row_bytes);
    });
  }
  for (const auto& [name, ne] : tw.add_f32_tensors) {
    w.add_tensor(name, GgmlType::F32, ne, [](int64_t, int64_t, uint8_t*) {});
  }
  w.write(dst_path);
}

}  // namespace engine::test
