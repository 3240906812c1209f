// Malformed GGUF containers: each is refused with one line naming the file, the field and the
// problem. Files are crafted byte by byte so every defect is exactly the one under test.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "engine/gguf.h"
#include "test_support.h"

namespace engine {
namespace {

using test::expect_error;

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

// Little-endian byte builder.
struct Bytes {
  std::vector<uint8_t> b;
  Bytes& u8(uint8_t v) { b.push_back(v); return *this; }
  Bytes& u32(uint32_t v) { return raw(&v, 4); }
  Bytes& u64(uint64_t v) { return raw(&v, 8); }
  Bytes& str(const std::string& s) { u64(s.size()); return raw(s.data(), s.size()); }
  Bytes& raw(const void* p, size_t n) {
    auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
  Bytes& pad(size_t align) { while (b.size() % align) b.push_back(0); return *this; }
};

struct Tensor {
  std::string name = "t";
  std::vector<uint64_t> ne = {32};
  uint32_t type = 0;  // F32
  uint64_t offset = 0;
};

// A small valid file: two metadata entries, the given tensors, and `data_bytes` of data.
struct FileSpec {
  uint32_t version = 3;
  std::vector<std::function<void(Bytes&)>> kvs = {
      [](Bytes& b) { b.str("general.architecture").u32(8).str("llama"); },
      [](Bytes& b) { b.str("general.alignment").u32(4).u32(32); },
  };
  std::vector<Tensor> tensors = {Tensor{}};
  uint64_t data_bytes = 128;
  uint64_t n_kv_override = 0, n_tensors_override = 0;

  std::vector<uint8_t> build() const {
    Bytes b;
    b.raw("GGUF", 4).u32(version);
    b.u64(n_tensors_override ? n_tensors_override : tensors.size());
    b.u64(n_kv_override ? n_kv_override : kvs.size());
    for (const auto& kv : kvs) kv(b);
    for (const auto& t : tensors) {
      b.str(t.name).u32(static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) b.u64(d);
      b.u32(t.type).u64(t.offset);
    }
    b.pad(32);
    b.b.resize(b.b.size() + data_bytes, 0);
    return b.b;
  }
};

class GgufValidation : public ::testing::Test {
 protected:
  std::string write(const std::vector<uint8_t>& bytes) {
    const std::string path = dir_.file("model.gguf");
    test::write_bytes(path, bytes);
    return path;
  }
  // Expects the file to be refused with a message naming the file and containing `parts`.
  void refused(const std::vector<uint8_t>& bytes, std::vector<std::string> parts) {
    const std::string path = write(bytes);
    parts.insert(parts.begin(), path);
    expect_error([&] { GgufFile::open(path); }, parts);
  }
  test::TempDir dir_;
};

TEST_F(GgufValidation, ValidFileParses) {
  FileSpec spec;
  spec.tensors.push_back({"u", {64, 2}, 2 /* Q4_0 */, 128});
  spec.data_bytes = 128 + 4 * 18;
  GgufFile f = GgufFile::open(write(spec.build()));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[1].n_bytes, 4u * 18u);
  EXPECT_EQ(f.tensors()[1].ne[1], 2);
  EXPECT_EQ(*f.find("general.architecture")->as_string(), "llama");
  EXPECT_EQ(f.tensors()[1].data - f.tensors()[0].data, 128);
}

TEST_F(GgufValidation, Version2Parses) {
  FileSpec spec;
  spec.version = 2;
  EXPECT_EQ(GgufFile::open(write(spec.build())).version(), 2u);
}

TEST_F(GgufValidation, BadMagic) {
  auto bytes = FileSpec{}.build();
  bytes[3] = 'X';
  refused(bytes, {"header.magic", "not a GGUF file"});
}

TEST_F(GgufValidation, BadVersions) {
  FileSpec spec;
  spec.version = 1;
  refused(spec.build(), {"header.version", "version 1"});
  spec.version = 7;
  refused(spec.build(), {"header.version", "unsupported version 7"});
  spec.version = 0x03000000;
  refused(spec.build(), {"header.version", "big-endian"});
}

TEST_F(GgufValidation, TruncatedHeader) {
  auto bytes = FileSpec{}.build();
  bytes.resize(10);
  refused(bytes, {"header.n_tensors", "truncated"});
  bytes.resize(3);
  refused(bytes, {"header.magic"});
}

TEST_F(GgufValidation, TruncatedMetadataAndTensorTable) {
  FileSpec long_key;
  long_key.kvs = {[](Bytes& b) { b.str(std::string(60, 'k')).u32(4).u32(1); }};
  auto cut = long_key.build();
  cut.resize(24 + 8 + 30);  // inside the key
  refused(cut, {"metadata entry #0", "past the end"});
  const auto full = FileSpec{}.build();
  cut = full;
  cut.resize(24 + 8 + 20 + 4 + 8 + 2);  // inside the first value string
  refused(cut, {"metadata 'general.architecture'"});
  // Header 24 bytes, then the two entries (45 and 33 bytes): the tensor table starts at 102.
  constexpr size_t kTable = 24 + (8 + 20 + 4 + 8 + 5) + (8 + 17 + 4 + 4);
  cut = full;
  cut.resize(kTable + 9 + 4 + 3);  // inside the first dimension
  refused(cut, {"tensor 't'", "truncated"});
}

TEST_F(GgufValidation, StringLengthPastEnd) {
  FileSpec spec;
  spec.kvs[0] = [](Bytes& b) { b.str("general.architecture").u32(8).u64(1ull << 40); };
  refused(spec.build(), {"metadata 'general.architecture'", "string length 1099511627776"});
  spec.kvs[0] = [](Bytes& b) { b.u64(kU64Max); };
  refused(spec.build(), {"metadata entry #0", "runs past the end"});
}

TEST_F(GgufValidation, ArrayCountPastEnd) {
  FileSpec spec;
  spec.kvs.push_back([](Bytes& b) { b.str("a").u32(9).u32(4).u64(1ull << 61); });
  refused(spec.build(), {"metadata 'a'", "array of 2305843009213693952 x u32"});
  spec.kvs.back() = [](Bytes& b) { b.str("a").u32(9).u32(8).u64(kU64Max / 2); };
  refused(spec.build(), {"metadata 'a'", "strings cannot fit"});
}

TEST_F(GgufValidation, CountsBeyondTheFile) {
  FileSpec spec;
  spec.n_kv_override = kU64Max;
  refused(spec.build(), {"header.n_kv", "cannot fit"});
  spec.n_kv_override = 0;
  spec.n_tensors_override = 1ull << 60;
  refused(spec.build(), {"header.n_tensors", "cannot fit"});
}

TEST_F(GgufValidation, UnknownValueType) {
  FileSpec spec;
  spec.kvs.push_back([](Bytes& b) { b.str("k").u32(13).u32(0); });
  refused(spec.build(), {"metadata 'k'", "unknown value type 13"});
  spec.kvs.back() = [](Bytes& b) { b.str("k").u32(9).u32(77).u64(1); };
  refused(spec.build(), {"metadata 'k'", "unknown value type 77"});
}

TEST_F(GgufValidation, NestedArray) {
  FileSpec spec;
  spec.kvs.push_back([](Bytes& b) { b.str("k").u32(9).u32(9).u64(1).u32(4).u64(1).u32(7); });
  refused(spec.build(), {"metadata 'k'", "nested arrays"});
}

TEST_F(GgufValidation, EmptyAndDuplicateKeys) {
  FileSpec spec;
  spec.kvs.push_back([](Bytes& b) { b.str("").u32(4).u32(1); });
  refused(spec.build(), {"metadata entry #2", "empty key"});
  spec.kvs.back() = [](Bytes& b) { b.str("general.architecture").u32(8).str("qwen2"); };
  refused(spec.build(), {"metadata 'general.architecture'", "duplicate key"});
}

TEST_F(GgufValidation, BadBool) {
  FileSpec spec;
  spec.kvs.push_back([](Bytes& b) { b.str("flag").u32(7).u8(2); });
  refused(spec.build(), {"metadata 'flag'", "bool value 2"});
}

TEST_F(GgufValidation, DuplicateTensorName) {
  FileSpec spec;
  spec.tensors.push_back({"t", {32}, 0, 128});
  spec.data_bytes = 256;
  refused(spec.build(), {"tensor 't'", "duplicate tensor name"});
}

TEST_F(GgufValidation, BadDimensions) {
  FileSpec spec;
  spec.tensors[0].ne = {32, 1, 1, 1, 1};
  refused(spec.build(), {"tensor 't'", "n_dims 5"});
  spec.tensors[0].ne = {};
  refused(spec.build(), {"tensor 't'", "n_dims 0"});
  spec.tensors[0].ne = {32, 0};
  refused(spec.build(), {"tensor 't'", "dimension 1 is 0"});
  spec.tensors[0].ne = {kU64Max};
  refused(spec.build(), {"tensor 't'", "dimension 0 is -1"});
}

TEST_F(GgufValidation, ElementAndByteCountOverflow) {
  FileSpec spec;
  spec.tensors[0].ne = {1ull << 32, 1ull << 32};
  refused(spec.build(), {"tensor 't'", "element count overflows"});
  spec.tensors[0].ne = {1ull << 31, 1ull << 31};  // 2^62 elements x 4 bytes
  refused(spec.build(), {"tensor 't'", "byte size overflows"});
}

TEST_F(GgufValidation, UnknownAndUnsupportedTensorTypes) {
  FileSpec spec;
  spec.tensors[0].type = 99;
  refused(spec.build(), {"tensor 't'", "unsupported tensor type unknown (99)"});
  spec.tensors[0].type = 39;
  refused(spec.build(), {"tensor 't'", "MXFP4 (39)"});
}

TEST_F(GgufValidation, RowNotMultipleOfBlock) {
  FileSpec spec;
  spec.tensors[0] = {"t", {48}, 12 /* Q4_K */, 0};
  refused(spec.build(), {"tensor 't'", "row length 48", "Q4_K", "256"});
}

TEST_F(GgufValidation, BadAlignment) {
  FileSpec spec;
  spec.kvs[1] = [](Bytes& b) { b.str("general.alignment").u32(4).u32(0); };
  refused(spec.build(), {"general.alignment", "0 is not a power of two"});
  spec.kvs[1] = [](Bytes& b) { b.str("general.alignment").u32(4).u32(48); };
  refused(spec.build(), {"general.alignment", "48 is not a power of two"});
  spec.kvs[1] = [](Bytes& b) { b.str("general.alignment").u32(10).u64(32); };
  refused(spec.build(), {"general.alignment", "has type u64, expected u32"});
}

TEST_F(GgufValidation, DataOutsideTheFile) {
  FileSpec spec;
  spec.tensors[0].offset = 1ull << 40;
  refused(spec.build(), {"tensor 't'", "outside the file"});
  spec.tensors[0].offset = kU64Max - 31;
  refused(spec.build(), {"tensor 't'", "outside the file"});
  spec.tensors[0].offset = 0;
  spec.data_bytes = 100;  // tensor needs 128
  refused(spec.build(), {"tensor 't'", "outside the file"});
}

TEST_F(GgufValidation, MisalignedData) {
  FileSpec spec;
  spec.tensors[0].offset = 4;
  spec.data_bytes = 256;
  refused(spec.build(), {"tensor 't'", "offset 4 is not a multiple of the alignment 32"});
}

TEST_F(GgufValidation, OverlappingData) {
  FileSpec spec;
  spec.tensors.push_back({"u", {64}, 0, 96});  // t covers [0, 128)
  spec.data_bytes = 512;
  refused(spec.build(), {"tensor 'u'", "overlaps tensor 't'"});
}

TEST_F(GgufValidation, InMemoryParseNamesTheGivenName) {
  auto bytes = FileSpec{}.build();
  bytes[0] = 'X';
  expect_error([&] { GgufFile::parse(bytes, "memory.gguf"); }, {"memory.gguf", "header.magic"});
}

}  // namespace
}  // namespace engine
