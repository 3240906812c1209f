// Read-only memory mapping of a whole file (RAII).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace engine {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws engine::Error naming the file
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace engine
