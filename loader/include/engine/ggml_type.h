// Tensor element types of GGUF files (ggml's type ids) and their block layout.
//
// One constexpr traits table: a type is either listed here with its block geometry, or it is
// refused by name and number wherever it appears.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace engine {

// Values are ggml's on-disk type ids; gaps are types ggml removed or that we do not support.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
};

struct TypeTraits {
  GgmlType type;
  std::string_view name;
  uint32_t block_size;   // elements per block (1 for plain floats)
  uint32_t block_bytes;  // bytes per block
  bool quantized;
};

// Every supported type, in type-id order.
std::span<const TypeTraits> all_type_traits();

// Traits of a supported type id, or nullopt for an unknown or unsupported id.
std::optional<TypeTraits> find_type_traits(uint32_t type_id);

// Traits of a type known to be supported.
const TypeTraits& traits(GgmlType type);

// Human name of any type id: "Q4_K", or for ids ggml knows but we do not support their ggml
// name ("MXFP4"), or "unknown".
std::string_view type_id_name(uint32_t type_id);

// Parses a type name ("q4_k", "Q4_K", "f16"); nullopt when unknown.
std::optional<GgmlType> parse_type_name(std::string_view name);

// Bytes of n_elements of the type. Precondition: n_elements % block_size == 0.
uint64_t type_bytes(GgmlType type, uint64_t n_elements);

}  // namespace engine
