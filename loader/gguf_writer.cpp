#include "engine/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "engine/error.h"
#include "engine/gguf.h"

namespace engine {
namespace {

constexpr uint64_t kChunkBytes = 64ull << 20;  // tensor data is produced and written in ~64 MiB

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

void write_all(int fd, const uint8_t* p, uint64_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, std::min<uint64_t>(n, 1u << 30), static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw Error(fmt::format("{}: write at offset {} failed: {}", path, offset,
                              std::strerror(errno)));
    }
    p += w;
    n -= static_cast<uint64_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  if (alignment != 32) add_u32("general.alignment", alignment);
}

void GgufWriter::begin_kv(const std::string& key, GgufValueType type) {
  put_string(kv_bytes_, key);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(type));
  ++n_kv_;
}

void GgufWriter::add_u32(const std::string& key, uint32_t v) {
  begin_kv(key, GgufValueType::u32);
  put(kv_bytes_, v);
}

void GgufWriter::add_i32(const std::string& key, int32_t v) {
  begin_kv(key, GgufValueType::i32);
  put(kv_bytes_, v);
}

void GgufWriter::add_u64(const std::string& key, uint64_t v) {
  begin_kv(key, GgufValueType::u64);
  put(kv_bytes_, v);
}

void GgufWriter::add_f32(const std::string& key, float v) {
  begin_kv(key, GgufValueType::f32);
  put(kv_bytes_, v);
}

void GgufWriter::add_bool(const std::string& key, bool v) {
  begin_kv(key, GgufValueType::boolean);
  put<uint8_t>(kv_bytes_, v ? 1 : 0);
}

void GgufWriter::add_string(const std::string& key, const std::string& v) {
  begin_kv(key, GgufValueType::string);
  put_string(kv_bytes_, v);
}

void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  begin_kv(key, GgufValueType::array);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufValueType::string));
  put<uint64_t>(kv_bytes_, v.size());
  for (const auto& s : v) put_string(kv_bytes_, s);
}

void GgufWriter::add_f32_array(const std::string& key, const std::vector<float>& v) {
  begin_kv(key, GgufValueType::array);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufValueType::f32));
  put<uint64_t>(kv_bytes_, v.size());
  for (float f : v) put(kv_bytes_, f);
}

void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  begin_kv(key, GgufValueType::array);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(GgufValueType::i32));
  put<uint64_t>(kv_bytes_, v.size());
  for (int32_t i : v) put(kv_bytes_, i);
}

void GgufWriter::add_value(const std::string& key, const GgufValue& v) {
  begin_kv(key, v.type());
  if (v.type() == GgufValueType::array) {
    put<uint32_t>(kv_bytes_, static_cast<uint32_t>(v.elem_type()));
    put<uint64_t>(kv_bytes_, v.size());
    if (v.elem_type() == GgufValueType::string) {
      for (std::string_view s : v.strings()) put_string(kv_bytes_, std::string(s));
    } else {
      const uint8_t* raw = v.raw_elements();
      kv_bytes_.insert(kv_bytes_.end(), raw, raw + v.size() * value_type_size(v.elem_type()));
    }
  } else if (v.type() == GgufValueType::string) {
    put_string(kv_bytes_, std::string(*v.as_string()));
  } else {
    const uint64_t bits = v.scalar_bits();
    const auto* p = reinterpret_cast<const uint8_t*>(&bits);  // little-endian host
    kv_bytes_.insert(kv_bytes_.end(), p, p + value_type_size(v.type()));
  }
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                            Fill fill) {
  const TypeTraits& tr = traits(type);
  if (ne.empty() || ne.size() > 4 || ne[0] % tr.block_size != 0) {
    throw Error(fmt::format("tensor '{}': shape unsuitable for {} (row length must be a multiple "
                            "of {})",
                            name, tr.name, tr.block_size));
  }
  uint64_t n = 1;
  for (int64_t d : ne) n *= static_cast<uint64_t>(d);
  uint64_t bytes = type_bytes(type, n);
  uint64_t offset = align_up(data_size_, alignment_);
  data_size_ = offset + bytes;
  tensors_.push_back({name, type, std::move(ne), offset, bytes, std::move(fill)});
}

uint64_t GgufWriter::header_size() const {
  uint64_t size = 4 + 4 + 8 + 8 + kv_bytes_.size();
  for (const auto& t : tensors_) size += 8 + t.name.size() + 4 + 8 * t.ne.size() + 4 + 8;
  return align_up(size, alignment_);
}

uint64_t GgufWriter::file_size() const { return header_size() + align_up(data_size_, alignment_); }

uint64_t GgufWriter::data_bytes() const {
  uint64_t total = 0;
  for (const auto& t : tensors_) total += t.fill ? t.n_bytes : 0;
  return total;
}

void GgufWriter::write(const std::string& path, const Progress& progress) const {
  std::vector<uint8_t> head;
  head.insert(head.end(), {'G', 'G', 'U', 'F'});
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, n_kv_);
  head.insert(head.end(), kv_bytes_.begin(), kv_bytes_.end());
  for (const auto& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, t.offset);
  }
  const uint64_t data_start = header_size();
  head.resize(data_start, 0);

  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("{}: cannot create: {}", path, std::strerror(errno)));
  try {
    // The file gets its final size first; tensors without data stay holes.
    if (::ftruncate(fd, static_cast<off_t>(file_size())) != 0) {
      throw Error(fmt::format("{}: cannot size to {} bytes: {}", path, file_size(),
                              std::strerror(errno)));
    }
    write_all(fd, head.data(), head.size(), 0, path);
    const uint64_t total = data_bytes();
    uint64_t done = 0;
    std::vector<uint8_t> chunk;
    for (const auto& t : tensors_) {
      if (!t.fill) continue;
      const int64_t rows = static_cast<int64_t>(t.n_bytes / type_bytes(t.type, t.ne[0]));
      const uint64_t row_bytes = type_bytes(t.type, t.ne[0]);
      const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkBytes / row_bytes);
      for (int64_t r = 0; r < rows; r += rows_per_chunk) {
        int64_t n = std::min(rows_per_chunk, rows - r);
        chunk.resize(n * row_bytes);
        t.fill(r, n, chunk.data());
        write_all(fd, chunk.data(), chunk.size(), data_start + t.offset + r * row_bytes, path);
        done += chunk.size();
        if (progress) progress(done, total);
      }
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) {
    throw Error(fmt::format("{}: close failed: {}", path, std::strerror(errno)));
  }
}

}  // namespace engine
