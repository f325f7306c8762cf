#include "common/random.h"

#include <cmath>

#include "common/error.h"

namespace cmaf {

DeterministicRng DeterministicRng::derive(uint64_t seed, uint64_t stream) {
  DeterministicRng mixer(seed ^ (0x9E3779B97F4A7C15ULL * (stream + 1)));
  return DeterministicRng(mixer.next_u64());
}

uint64_t DeterministicRng::next_u64() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double DeterministicRng::uniform() {
  return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0);
}

double DeterministicRng::uniform(double low, double high) { return low + (high - low) * uniform(); }

uint64_t DeterministicRng::below(uint64_t bound) {
  CMAF_CHECK_GE(bound, uint64_t{1}, "DeterministicRng::below needs a positive bound");
  // Rejection sampling: drop the top partial range so every value is equally likely.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t value = next_u64();
  while (value >= limit) value = next_u64();
  return value % bound;
}

double DeterministicRng::normal() {
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace cmaf
