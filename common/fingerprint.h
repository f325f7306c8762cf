// FNV-1a over bytes: cheap fingerprints that ranks compare to check they hold identical state
// (model replicas, Lagrange multipliers). Not cryptographic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <sstream>
#include <string>

namespace cmaf {

inline constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;

// Continues `hash` over `size` bytes at `data` (start with kFnvOffsetBasis).
inline uint64_t fnv1a(const void* data, size_t size, uint64_t hash = kFnvOffsetBasis) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

// A fingerprint as 16 lower-case hex digits (checkpoint manifests, the ranks' agreement checks).
inline std::string fingerprint_hex(uint64_t value) {
  std::ostringstream out;
  out << std::hex << std::setw(16) << std::setfill('0') << value;
  return out.str();
}

}  // namespace cmaf
