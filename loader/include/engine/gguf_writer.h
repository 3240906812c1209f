// Writes GGUF v3 files: metadata, tensor table, and tensor data produced on demand in row chunks
// (so multi-GB models stream to disk). A tensor without a fill function is left as a file hole:
// a full-size sparse model in seconds, for planning tests.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/ggml_type.h"
#include "engine/gguf.h"

namespace engine {

class GgufWriter {
 public:
  // Writes the bytes of rows [row_begin, row_begin + n_rows) of a tensor into `out`.
  using Fill = std::function<void(int64_t row_begin, int64_t n_rows, uint8_t* out)>;
  // Called after each chunk with bytes written so far and the total.
  using Progress = std::function<void(uint64_t done, uint64_t total)>;

  explicit GgufWriter(uint32_t alignment = 32);

  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // Copies a value read from another file, whatever its type.
  void add_value(const std::string& key, const GgufValue& v);

  // ne[0] is the row length; it must be a multiple of the type's block size.
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, Fill fill);

  uint64_t file_size() const;
  uint64_t data_bytes() const;  // tensor bytes that fill functions produce (excludes holes)
  void write(const std::string& path, const Progress& progress = {}) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    uint64_t offset;
    uint64_t n_bytes;
    Fill fill;
  };
  uint64_t header_size() const;
  void begin_kv(const std::string& key, GgufValueType type);

  uint32_t alignment_;
  uint64_t n_kv_ = 0;
  std::vector<uint8_t> kv_bytes_;
  std::vector<Tensor> tensors_;
  uint64_t data_size_ = 0;
};

}  // namespace engine
