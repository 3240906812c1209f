// A model as stored on disk: one GGUF file, or split files "name-00001-of-00003.gguf" opened as
// one. Metadata comes from the first split; the tensor table is the union of all splits.
#pragma once

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

  const std::string& path() const { return files_.front().path(); }
  const std::vector<GgufFile>& files() const { return files_; }
  const GgufFile& first() const { return files_.front(); }
  uint64_t total_bytes() const;

  const GgufValue* find(std::string_view key) const { return files_.front().find(key); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  std::vector<GgufFile> files_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace engine
