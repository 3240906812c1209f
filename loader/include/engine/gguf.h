// One GGUF file (v2 or v3), memory-mapped read-only and fully validated on open.
//
// Metadata strings, string arrays and numeric arrays point into the mapping (no copy); so does
// tensor data. Everything read from the file is bounds- and overflow-checked: a malformed file
// throws engine::Error with one line "<file>: <field>: <problem>", never crashes or allocates more
// than a small multiple of the file's size.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/ggml_type.h"

namespace engine {

enum class GgufValueType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

std::string_view value_type_name(GgufValueType type);
// Bytes of one scalar of the type on disk; 0 for string and array.
uint64_t value_type_size(GgufValueType type);

// A metadata value. Scalars are held by value; strings and arrays are views into the file.
class GgufValue {
 public:
  GgufValueType type() const { return type_; }
  bool is_array() const { return type_ == GgufValueType::array; }

  // Scalars. Each returns nullopt when the value has another type; as_int accepts every integer
  // type whose value fits int64, as_float accepts f32 and f64.
  std::optional<int64_t> as_int() const;
  std::optional<uint64_t> as_uint() const;  // non-negative integers of any width
  std::optional<double> as_float() const;
  std::optional<bool> as_bool() const;
  std::optional<std::string_view> as_string() const;

  // Arrays (precondition: is_array()).
  GgufValueType elem_type() const { return elem_type_; }
  uint64_t size() const { return count_; }
  std::span<const std::string_view> strings() const { return strings_; }  // string arrays
  std::optional<int64_t> int_at(uint64_t i) const;                        // integer arrays
  std::optional<double> float_at(uint64_t i) const;                       // f32/f64 arrays

  // Raw access for copying a value to another file.
  uint64_t scalar_bits() const { return bits_; }
  const uint8_t* raw_elements() const { return raw_; }

  // Human-readable rendering ("[152064 strings]" for long arrays).
  std::string to_string() const;

 private:
  friend class GgufParser;
  GgufValueType type_ = GgufValueType::u8;
  uint64_t bits_ = 0;  // integer, bool or float bits of a scalar
  std::string_view str_;
  GgufValueType elem_type_ = GgufValueType::u8;
  uint64_t count_ = 0;
  const uint8_t* raw_ = nullptr;  // numeric array elements, little-endian
  std::vector<std::string_view> strings_;
};

struct TensorInfo {
  std::string_view name;
  GgmlType type = GgmlType::F32;
  uint32_t n_dims = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  uint64_t offset = 0;   // from the start of the file's data section
  uint32_t split = 0;    // index of the split file holding the data (0 for single files)
  const uint8_t* data = nullptr;

  int64_t rows() const { return static_cast<int64_t>(n_elements) / ne[0]; }
  std::string shape_string() const;  // "[5120, 27648]"
};

class MappedFile;

class GgufFile {
 public:
  // Maps and parses a file. Throws engine::Error naming the file on any problem.
  static GgufFile open(const std::string& path);
  // Parses bytes the caller keeps alive (tests and fuzzing); `name` is used in errors.
  static GgufFile parse(std::span<const uint8_t> bytes, std::string name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t file_size() const { return bytes_.size(); }
  uint64_t data_offset() const { return data_offset_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string_view, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }

 private:
  friend class GgufParser;
  std::string path_;
  std::shared_ptr<MappedFile> mapping_;
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string_view, GgufValue>> kv_;
  std::unordered_map<std::string_view, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
};

}  // namespace engine
