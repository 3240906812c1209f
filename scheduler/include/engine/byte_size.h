// Byte sizes as users write them ("24GiB", "512MiB", "1.5GB", "1048576") and as we print them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace engine {

// Binary (KiB, MiB, GiB, TiB) and decimal (KB, MB, GB, TB) units, case-insensitive, optional "B";
// a bare number is bytes. nullopt for anything else, negative values or overflow.
std::optional<uint64_t> parse_byte_size(std::string_view text);

// "18.48 GiB" (two decimals, binary units).
std::string format_gib(uint64_t bytes);

}  // namespace engine
