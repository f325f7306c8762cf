// Deterministic, portable random numbers.
//
// std::uniform_*_distribution and std::shuffle are implementation-defined: the same seed gives
// different streams under libstdc++ and libc++. Everything that must replay identically (splits,
// synthetic data, sampling on every rank) uses this generator instead: SplitMix64 (Steele et al.)
// with explicitly defined derived distributions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace cmaf {

class DeterministicRng {
 public:
  explicit DeterministicRng(uint64_t seed) : state_(seed) {}
  // Independent stream for a sub-task: mixes the parent seed with `stream` (e.g. a case index).
  static DeterministicRng derive(uint64_t seed, uint64_t stream);

  uint64_t next_u64();
  double uniform();                         // [0, 1), 53 random bits
  double uniform(double low, double high);  // [low, high)
  uint64_t below(uint64_t bound);           // [0, bound), unbiased; bound >= 1
  double normal();                          // standard normal (Box-Muller)

  // Fisher-Yates with below(): identical permutations on every platform.
  template <typename T>
  void shuffle(std::vector<T>& items) {
    for (size_t i = items.size(); i > 1; --i) {
      const size_t j = static_cast<size_t>(below(i));
      std::swap(items[i - 1], items[j]);
    }
  }

 private:
  uint64_t state_;
};

}  // namespace cmaf
