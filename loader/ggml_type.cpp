#include "engine/ggml_type.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace engine {
namespace {

constexpr uint32_t QK_K = 256;  // super-block size of the K-quants

constexpr std::array<TypeTraits, 24> kTraits{{
    {GgmlType::F32, "F32", 1, 4, false},
    {GgmlType::F16, "F16", 1, 2, false},
    {GgmlType::Q4_0, "Q4_0", 32, 2 + 16, true},
    {GgmlType::Q4_1, "Q4_1", 32, 2 + 2 + 16, true},
    {GgmlType::Q5_0, "Q5_0", 32, 2 + 4 + 16, true},
    {GgmlType::Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16, true},
    {GgmlType::Q8_0, "Q8_0", 32, 2 + 32, true},
    {GgmlType::Q2_K, "Q2_K", QK_K, QK_K / 16 + QK_K / 4 + 2 + 2, true},
    {GgmlType::Q3_K, "Q3_K", QK_K, QK_K / 8 + QK_K / 4 + 12 + 2, true},
    {GgmlType::Q4_K, "Q4_K", QK_K, 2 + 2 + 12 + QK_K / 2, true},
    {GgmlType::Q5_K, "Q5_K", QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2, true},
    {GgmlType::Q6_K, "Q6_K", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, true},
    {GgmlType::IQ2_XXS, "IQ2_XXS", QK_K, 2 + QK_K / 4, true},
    {GgmlType::IQ2_XS, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, true},
    {GgmlType::IQ3_XXS, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, true},
    {GgmlType::IQ1_S, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, true},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 2 + 16, true},
    {GgmlType::IQ3_S, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + QK_K / 64, true},
    {GgmlType::IQ2_S, "IQ2_S", QK_K, 2 + QK_K / 8 + QK_K / 8 + QK_K / 32 + QK_K / 32, true},
    {GgmlType::IQ4_XS, "IQ4_XS", QK_K, 2 + 2 + QK_K / 64 + QK_K / 2, true},
    {GgmlType::IQ1_M, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, true},
    {GgmlType::BF16, "BF16", 1, 2, false},
    {GgmlType::TQ1_0, "TQ1_0", QK_K, (QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2, true},
    {GgmlType::TQ2_0, "TQ2_0", QK_K, QK_K / 4 + 2, true},
}};

static_assert(kTraits[9].block_bytes == 144, "Q4_K block is 144 bytes");
static_assert(kTraits[11].block_bytes == 210, "Q6_K block is 210 bytes");
static_assert(kTraits[12].block_bytes == 66, "IQ2_XXS block is 66 bytes");
static_assert(kTraits[13].block_bytes == 74, "IQ2_XS block is 74 bytes");
static_assert(kTraits[14].block_bytes == 98, "IQ3_XXS block is 98 bytes");
static_assert(kTraits[15].block_bytes == 50, "IQ1_S block is 50 bytes");
static_assert(kTraits[17].block_bytes == 110, "IQ3_S block is 110 bytes");
static_assert(kTraits[18].block_bytes == 82, "IQ2_S block is 82 bytes");
static_assert(kTraits[19].block_bytes == 136, "IQ4_XS block is 136 bytes");
static_assert(kTraits[20].block_bytes == 56, "IQ1_M block is 56 bytes");
static_assert(kTraits[22].block_bytes == 54, "TQ1_0 block is 54 bytes");
static_assert(kTraits[23].block_bytes == 66, "TQ2_0 block is 66 bytes");

// ggml type ids that exist but that the engine does not support, so errors can name them.
struct KnownId {
  uint32_t id;
  std::string_view name;
};
constexpr std::array<KnownId, 11> kUnsupported{{
    {4, "Q4_2 (removed)"}, {5, "Q4_3 (removed)"}, {9, "Q8_1"},     {15, "Q8_K"},
    {24, "I8"},            {25, "I16"},           {26, "I32"},     {27, "I64"},
    {28, "F64"},
    {39, "MXFP4"},         {40, "NVFP4"},
}};

}  // namespace

std::span<const TypeTraits> all_type_traits() { return kTraits; }

std::optional<TypeTraits> find_type_traits(uint32_t type_id) {
  for (const auto& t : kTraits) {
    if (static_cast<uint32_t>(t.type) == type_id) return t;
  }
  return std::nullopt;
}

const TypeTraits& traits(GgmlType type) {
  for (const auto& t : kTraits) {
    if (t.type == type) return t;
  }
  return kTraits[0];  // unreachable for a valid enum value
}

std::string_view type_id_name(uint32_t type_id) {
  if (auto t = find_type_traits(type_id)) return t->name;
  for (const auto& k : kUnsupported) {
    if (k.id == type_id) return k.name;
  }
  return "unknown";
}

std::optional<GgmlType> parse_type_name(std::string_view name) {
  for (const auto& t : kTraits) {
    if (std::equal(name.begin(), name.end(), t.name.begin(), t.name.end(),
                   [](char a, char b) { return std::toupper(a) == std::toupper(b); })) {
      return t.type;
    }
  }
  return std::nullopt;
}

uint64_t type_bytes(GgmlType type, uint64_t n_elements) {
  const auto& t = traits(type);
  return n_elements / t.block_size * t.block_bytes;
}

}  // namespace engine
