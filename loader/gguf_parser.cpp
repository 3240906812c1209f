// GGUF container parser. Layout (little-endian):
//   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value_type | value }
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 type | u64 offset }
//   padding to general.alignment | tensor data (offsets relative to here)
// where string = u64 length + bytes and array = u32 elem_type + u64 count + elements.
#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_set>

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/gguf.h"
#include "mapped_file.h"

namespace engine {
namespace {

constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;        // key length, 1-char key, type, u8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;  // 1 dim, 1-char name


bool is_known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::f64); }


bool is_integer_type(GgufValueType t) {
  switch (t) {
    case GgufValueType::u8:
    case GgufValueType::i8:
    case GgufValueType::u16:
    case GgufValueType::i16:
    case GgufValueType::u32:
    case GgufValueType::i32:
    case GgufValueType::u64:
    case GgufValueType::i64: return true;
    default: return false;
  }
}

template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // host is little-endian (checked in CMake)
  return v;
}

// Sign- or zero-extends a scalar integer of type t from raw little-endian bytes.
int64_t load_int(GgufValueType t, const uint8_t* p, bool* fits) {
  *fits = true;
  switch (t) {
    case GgufValueType::u8: return load_le<uint8_t>(p);
    case GgufValueType::i8: return load_le<int8_t>(p);
    case GgufValueType::u16: return load_le<uint16_t>(p);
    case GgufValueType::i16: return load_le<int16_t>(p);
    case GgufValueType::u32: return load_le<uint32_t>(p);
    case GgufValueType::i32: return load_le<int32_t>(p);
    case GgufValueType::i64: return load_le<int64_t>(p);
    case GgufValueType::u64: {
      uint64_t v = load_le<uint64_t>(p);
      *fits = v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      return static_cast<int64_t>(v);
    }
    default: *fits = false; return 0;
  }
}

}  // namespace

uint64_t value_type_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::u8:
    case GgufValueType::i8:
    case GgufValueType::boolean: return 1;
    case GgufValueType::u16:
    case GgufValueType::i16: return 2;
    case GgufValueType::u32:
    case GgufValueType::i32:
    case GgufValueType::f32: return 4;
    case GgufValueType::u64:
    case GgufValueType::i64:
    case GgufValueType::f64: return 8;
    default: return 0;
  }
}

std::string_view value_type_name(GgufValueType type) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",     "u16",   "i16", "u32",
                                                "i32", "f32",    "bool",  "string", "array",
                                                "u64", "i64",    "f64"};
  auto i = static_cast<uint32_t>(type);
  return i < std::size(kNames) ? kNames[i] : std::string_view("unknown");
}

std::optional<int64_t> GgufValue::as_int() const {
  if (!is_integer_type(type_)) return std::nullopt;
  if (type_ == GgufValueType::u64 && bits_ > uint64_t(std::numeric_limits<int64_t>::max())) {
    return std::nullopt;
  }
  return static_cast<int64_t>(bits_);
}

std::optional<uint64_t> GgufValue::as_uint() const {
  if (!is_integer_type(type_)) return std::nullopt;
  if (type_ == GgufValueType::u64) return bits_;
  auto v = static_cast<int64_t>(bits_);
  if (v < 0) return std::nullopt;
  return static_cast<uint64_t>(v);
}

std::optional<double> GgufValue::as_float() const {
  if (type_ == GgufValueType::f64) {
    double d;
    std::memcpy(&d, &bits_, sizeof d);
    return d;
  }
  if (type_ == GgufValueType::f32) {
    float f;
    auto b = static_cast<uint32_t>(bits_);
    std::memcpy(&f, &b, sizeof f);
    return f;
  }
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const {
  if (type_ != GgufValueType::boolean) return std::nullopt;
  return bits_ != 0;
}

std::optional<std::string_view> GgufValue::as_string() const {
  if (type_ != GgufValueType::string) return std::nullopt;
  return str_;
}

std::optional<int64_t> GgufValue::int_at(uint64_t i) const {
  if (!is_array() || i >= count_ || !is_integer_type(elem_type_)) return std::nullopt;
  bool fits = false;
  int64_t v = load_int(elem_type_, raw_ + i * value_type_size(elem_type_), &fits);
  if (!fits) return std::nullopt;
  return v;
}

std::optional<double> GgufValue::float_at(uint64_t i) const {
  if (!is_array() || i >= count_) return std::nullopt;
  if (elem_type_ == GgufValueType::f32) return load_le<float>(raw_ + i * 4);
  if (elem_type_ == GgufValueType::f64) return load_le<double>(raw_ + i * 8);
  return std::nullopt;
}

std::string GgufValue::to_string() const {
  switch (type_) {
    case GgufValueType::string: return fmt::format("\"{}\"", str_.substr(0, 80));
    case GgufValueType::boolean: return bits_ ? "true" : "false";
    case GgufValueType::f32:
    case GgufValueType::f64: return fmt::format("{}", *as_float());
    case GgufValueType::array:
      return fmt::format("[{} x {}]", count_, value_type_name(elem_type_));
    case GgufValueType::u64: return fmt::format("{}", bits_);
    default: return fmt::format("{}", static_cast<int64_t>(bits_));
  }
}

std::string TensorInfo::shape_string() const {
  std::string s = "[";
  for (uint32_t i = 0; i < n_dims; ++i) s += fmt::format("{}{}", i ? ", " : "", ne[i]);
  return s + "]";
}

// Reads the file front to back; every read is bounds-checked against the file size.
class GgufParser {
 public:
  GgufParser(GgufFile& out, std::span<const uint8_t> bytes) : f_(out), b_(bytes) {}

  void run() {
    read_header();
    for (uint64_t i = 0; i < n_kv_; ++i) read_kv(i);
    read_alignment();
    tensors_start_ = pos_;
    for (uint64_t i = 0; i < n_tensors_; ++i) read_tensor_info(i);
    place_tensor_data();
  }

 private:
  [[noreturn]] void fail(std::string_view field, std::string_view problem) const {
    throw Error(fmt::format("{}: {}: {}", f_.path_, field, problem));
  }

  void need(uint64_t n, std::string_view field) const {
    if (n > b_.size() - pos_) {
      fail(field, fmt::format("truncated: needs {} bytes at offset {}, file has {}", n, pos_,
                              b_.size()));
    }
  }

  template <typename T>
  T read(std::string_view field) {
    need(sizeof(T), field);
    T v = load_le<T>(b_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_string(std::string_view field) {
    auto len = read<uint64_t>(field);
    if (len > b_.size() - pos_) {
      fail(field, fmt::format("string length {} at offset {} runs past the end of the file ({} "
                              "bytes)",
                              len, pos_ - 8, b_.size()));
    }
    std::string_view s(reinterpret_cast<const char*>(b_.data() + pos_), len);
    pos_ += len;
    return s;
  }

  void read_header() {
    if (b_.size() < 4 || std::memcmp(b_.data(), "GGUF", 4) != 0) {
      fail("header.magic", "not a GGUF file (bad magic)");
    }
    pos_ = 4;
    auto version = read<uint32_t>("header.version");
    if (version == 0x02000000 || version == 0x03000000) {
      fail("header.version", "big-endian GGUF files are not supported");
    }
    if (version == 1) fail("header.version", "GGUF version 1 is obsolete; re-convert the model");
    if (version != 2 && version != 3) {
      fail("header.version", fmt::format("unsupported version {} (2 and 3 are)", version));
    }
    f_.version_ = version;
    n_tensors_ = read<uint64_t>("header.n_tensors");
    n_kv_ = read<uint64_t>("header.n_kv");
    // Each entry needs a minimum number of bytes, so counts beyond what the file can hold are
    // refused here rather than trusted for allocation.
    uint64_t rest = b_.size() - pos_;
    if (n_kv_ > rest / kMinKvBytes) {
      fail("header.n_kv", fmt::format("{} metadata entries cannot fit in {} bytes", n_kv_, rest));
    }
    if (n_tensors_ > rest / kMinTensorInfoBytes) {
      fail("header.n_tensors", fmt::format("{} tensors cannot fit in {} bytes", n_tensors_, rest));
    }
  }

  void read_kv(uint64_t index) {
    std::string field = fmt::format("metadata entry #{}", index);
    std::string_view key = read_string(field);
    if (key.empty()) fail(field, "empty key");
    field = fmt::format("metadata '{}'", key);
    if (f_.kv_index_.count(key)) fail(field, "duplicate key");
    auto type = read<uint32_t>(field);
    if (!is_known_value_type(type)) fail(field, fmt::format("unknown value type {}", type));
    GgufValue v;
    v.type_ = static_cast<GgufValueType>(type);
    if (v.type_ == GgufValueType::array) {
      read_array(v, field);
    } else {
      read_scalar(v, field);
    }
    f_.kv_index_.emplace(key, f_.kv_.size());
    f_.kv_.emplace_back(key, std::move(v));
  }

  void read_scalar(GgufValue& v, const std::string& field) {
    if (v.type_ == GgufValueType::string) {
      v.str_ = read_string(field);
      return;
    }
    uint64_t size = value_type_size(v.type_);
    need(size, field);
    const uint8_t* p = b_.data() + pos_;
    pos_ += size;
    switch (v.type_) {
      case GgufValueType::f32: v.bits_ = load_le<uint32_t>(p); break;
      case GgufValueType::f64: v.bits_ = load_le<uint64_t>(p); break;
      case GgufValueType::boolean:
        if (*p > 1) fail(field, fmt::format("bool value {} is neither 0 nor 1", *p));
        v.bits_ = *p;
        break;
      default: {
        bool fits = false;
        v.bits_ = static_cast<uint64_t>(load_int(v.type_, p, &fits));
        break;
      }
    }
  }

  void read_array(GgufValue& v, const std::string& field) {
    auto elem = read<uint32_t>(field);
    if (!is_known_value_type(elem)) {
      fail(field, fmt::format("array of unknown value type {}", elem));
    }
    v.elem_type_ = static_cast<GgufValueType>(elem);
    if (v.elem_type_ == GgufValueType::array) fail(field, "nested arrays are not supported");
    v.count_ = read<uint64_t>(field);
    uint64_t rest = b_.size() - pos_;
    if (v.elem_type_ == GgufValueType::string) {
      if (v.count_ > rest / 8) {
        fail(field, fmt::format("array of {} strings cannot fit in the {} bytes left", v.count_,
                                rest));
      }
      v.strings_.reserve(v.count_);
      for (uint64_t i = 0; i < v.count_; ++i) v.strings_.push_back(read_string(field));
      return;
    }
    uint64_t size = value_type_size(v.elem_type_);
    if (v.count_ > rest / size) {
      fail(field, fmt::format("array of {} x {} runs past the end of the file", v.count_,
                              value_type_name(v.elem_type_)));
    }
    v.raw_ = b_.data() + pos_;
    if (v.elem_type_ == GgufValueType::boolean) {
      for (uint64_t i = 0; i < v.count_; ++i) {
        if (v.raw_[i] > 1) fail(field, fmt::format("bool element {} is neither 0 nor 1", i));
      }
    }
    pos_ += v.count_ * size;
  }

  void read_alignment() {
    const GgufValue* a = f_.find("general.alignment");
    if (a == nullptr) return;
    if (a->type() != GgufValueType::u32) {
      fail("metadata 'general.alignment'",
           fmt::format("has type {}, expected u32", value_type_name(a->type())));
    }
    auto align = static_cast<uint32_t>(*a->as_uint());
    if (align == 0 || (align & (align - 1)) != 0) {
      fail("metadata 'general.alignment'", fmt::format("{} is not a power of two", align));
    }
    f_.alignment_ = align;
  }

  void read_tensor_info(uint64_t index) {
    std::string field = fmt::format("tensor #{}", index);
    TensorInfo t;
    t.name = read_string(field);
    if (t.name.empty()) fail(field, "empty tensor name");
    field = fmt::format("tensor '{}'", t.name);
    if (!names_.emplace(t.name).second) fail(field, "duplicate tensor name");
    t.n_dims = read<uint32_t>(field);
    if (t.n_dims == 0 || t.n_dims > kMaxDims) {
      fail(field, fmt::format("n_dims {} outside 1..{}", t.n_dims, kMaxDims));
    }
    uint64_t n = 1;
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      auto ne = read<uint64_t>(field);
      if (ne == 0 || ne > uint64_t(std::numeric_limits<int64_t>::max())) {
        fail(field, fmt::format("dimension {} is {} (must be positive)", d,
                                static_cast<int64_t>(ne)));
      }
      if (n > uint64_t(std::numeric_limits<int64_t>::max()) / ne) {
        fail(field, "element count overflows 64 bits");
      }
      n *= ne;
      t.ne[d] = static_cast<int64_t>(ne);
    }
    t.n_elements = n;
    auto type_id = read<uint32_t>(field);
    auto tr = find_type_traits(type_id);
    if (!tr) {
      fail(field, fmt::format("unsupported tensor type {} ({})", type_id_name(type_id), type_id));
    }
    t.type = tr->type;
    if (t.ne[0] % tr->block_size != 0) {
      fail(field, fmt::format("row length {} is not a multiple of {}'s block size {}", t.ne[0],
                              tr->name, tr->block_size));
    }
    uint64_t blocks = n / tr->block_size;
    if (blocks > std::numeric_limits<uint64_t>::max() / tr->block_bytes) {
      fail(field, "byte size overflows 64 bits");
    }
    t.n_bytes = blocks * tr->block_bytes;
    t.offset = read<uint64_t>(field);
    f_.tensors_.push_back(t);
  }

  void place_tensor_data() {
    uint64_t align = f_.alignment_;
    uint64_t data = pos_;
    if (data % align != 0) data += align - data % align;  // pos_ <= size, no overflow
    f_.data_offset_ = data;
    uint64_t size = b_.size();
    std::vector<TensorInfo*> by_offset;
    by_offset.reserve(f_.tensors_.size());
    for (auto& t : f_.tensors_) {
      std::string field = fmt::format("tensor '{}'", t.name);
      if (t.offset % align != 0) {
        fail(field, fmt::format("data offset {} is not a multiple of the alignment {}", t.offset,
                                align));
      }
      if (data > size || t.offset > size - data || t.n_bytes > size - data - t.offset) {
        fail(field, fmt::format("data [{}, +{}) lies outside the file ({} bytes)",
                                data + std::min(t.offset, size), t.n_bytes, size));
      }
      t.data = b_.data() + data + t.offset;
      by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      const TensorInfo& prev = *by_offset[i - 1];
      const TensorInfo& cur = *by_offset[i];
      if (cur.offset < prev.offset + prev.n_bytes) {
        fail(fmt::format("tensor '{}'", cur.name),
             fmt::format("data overlaps tensor '{}'", prev.name));
      }
    }
  }

  GgufFile& f_;
  std::span<const uint8_t> b_;
  uint64_t pos_ = 0;
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
  uint64_t tensors_start_ = 0;
  std::unordered_set<std::string_view> names_;
};

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, std::string name) {
  GgufFile f;
  f.path_ = std::move(name);
  f.bytes_ = bytes;
  GgufParser(f, bytes).run();
  return f;
}

GgufFile GgufFile::open(const std::string& path) {
  auto mapping = std::make_shared<MappedFile>(path);
  GgufFile f = parse(mapping->bytes(), path);
  f.mapping_ = std::move(mapping);
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

}  // namespace engine
