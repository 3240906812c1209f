// A model as stored on disk: one GGUF file, or split files "name-00001-of-00003.gguf" opened as
// one. Metadata comes from the first split; the tensor table is the union of all splits.
//
// ModelFile is a cheap, copyable handle: copies share one set of mappings, which stay valid (with
// every string_view, TensorInfo and data pointer taken from them) while any copy lives.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/gguf.h"

namespace engine {

class ModelFile {
 public:
  // Opens `path`; when it is one part of a split model, opens every part (any part may be named).
  static ModelFile open(const std::string& path);
  // Wraps one already-parsed file (no split handling): in-memory models, tests and fuzzing.
  static ModelFile from_file(GgufFile file);

  const std::string& path() const { return s_->files.front().path(); }
  const std::vector<GgufFile>& files() const { return s_->files; }
  const GgufFile& first() const { return s_->files.front(); }
  uint64_t total_bytes() const;

  const GgufValue* find(std::string_view key) const { return first().find(key); }
  const std::vector<TensorInfo>& tensors() const { return s_->tensors; }
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  struct State {
    std::vector<GgufFile> files;
    std::vector<TensorInfo> tensors;
    std::unordered_map<std::string_view, size_t> tensor_index;
  };
  std::shared_ptr<const State> s_;
};

}  // namespace engine
