#include "engine/model_file.h"

#include <regex>

#include <fmt/format.h>

#include "engine/error.h"

namespace engine {
namespace {

// llama.cpp's split naming: <prefix>-<no, 1-based, 5 digits>-of-<count, 5 digits>.gguf
const std::regex kSplitName(R"((.*)-(\d{5})-of-(\d{5})\.gguf)");

std::string split_path(const std::string& prefix, uint32_t no, uint32_t count) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, no + 1, count);
}

// Reads an integer split key; nullopt when absent.
std::optional<int64_t> split_key(const GgufFile& f, std::string_view key) {
  const GgufValue* v = f.find(key);
  if (v == nullptr) return std::nullopt;
  auto i = v->as_int();
  if (!i) {
    throw Error(fmt::format("{}: metadata '{}': has type {}, expected an integer", f.path(), key,
                            value_type_name(v->type())));
  }
  return i;
}

}  // namespace

ModelFile ModelFile::open(const std::string& path) {
  auto m = std::make_shared<State>();
  GgufFile given = GgufFile::open(path);
  auto count = split_key(given, "split.count").value_or(1);
  if (count < 1 || count > 9999) {
    throw Error(fmt::format("{}: metadata 'split.count': {} outside 1..9999", path, count));
  }
  if (count == 1) {
    m->files.push_back(std::move(given));
  } else {
    std::smatch match;
    if (!std::regex_match(path, match, kSplitName)) {
      throw Error(fmt::format("{}: split model ({} parts) but the name does not end in "
                              "-NNNNN-of-NNNNN.gguf",
                              path, count));
    }
    if (std::stoi(match[3].str()) != count) {
      throw Error(fmt::format("{}: metadata 'split.count': {} disagrees with the file name", path,
                              count));
    }
    const std::string prefix = match[1].str();
    for (uint32_t i = 0; i < count; ++i) {
      std::string p = split_path(prefix, i, static_cast<uint32_t>(count));
      m->files.push_back(p == path ? std::move(given) : GgufFile::open(p));
      const GgufFile& f = m->files.back();
      if (split_key(f, "split.no").value_or(-1) != i) {
        throw Error(fmt::format("{}: metadata 'split.no': expected {}", p, i));
      }
      if (split_key(f, "split.count").value_or(-1) != count) {
        throw Error(fmt::format("{}: metadata 'split.count': expected {}", p, count));
      }
    }
  }
  for (uint32_t s = 0; s < m->files.size(); ++s) {
    for (TensorInfo t : m->files[s].tensors()) {
      t.split = s;
      if (!m->tensor_index.emplace(t.name, m->tensors.size()).second) {
        throw Error(fmt::format("{}: tensor '{}': duplicate tensor name across split files",
                                m->files[s].path(), t.name));
      }
      m->tensors.push_back(t);
    }
  }
  if (auto expected = split_key(m->files.front(), "split.tensors.count")) {
    if (*expected != static_cast<int64_t>(m->tensors.size())) {
      throw Error(fmt::format("{}: metadata 'split.tensors.count': {} but the parts hold {} "
                              "tensors",
                              path, *expected, m->tensors.size()));
    }
  }
  ModelFile file;
  file.s_ = std::move(m);
  return file;
}

ModelFile ModelFile::from_file(GgufFile file) {
  auto m = std::make_shared<State>();
  m->files.push_back(std::move(file));
  for (const TensorInfo& t : m->files.front().tensors()) {
    m->tensor_index.emplace(t.name, m->tensors.size());  // names are unique within a file
    m->tensors.push_back(t);
  }
  ModelFile result;
  result.s_ = std::move(m);
  return result;
}

uint64_t ModelFile::total_bytes() const {
  uint64_t total = 0;
  for (const auto& f : s_->files) total += f.file_size();
  return total;
}

const TensorInfo* ModelFile::find_tensor(std::string_view name) const {
  auto it = s_->tensor_index.find(name);
  return it == s_->tensor_index.end() ? nullptr : &s_->tensors[it->second];
}

}  // namespace engine
