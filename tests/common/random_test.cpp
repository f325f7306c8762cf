#include "common/random.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

namespace cmaf {
namespace {

TEST(DeterministicRng, SameSeedSameStreamDifferentSeedDifferentStream) {
  DeterministicRng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    const uint64_t va = a.next_u64();
    EXPECT_EQ(va, b.next_u64());
    EXPECT_NE(va, c.next_u64());
  }
}

TEST(DeterministicRng, FirstValueIsThePublishedSplitMix64Output) {
  // SplitMix64 from state 0: first output 0xE220A8397B1DCDAF (reference implementation).
  DeterministicRng rng(0);
  EXPECT_EQ(rng.next_u64(), 0xE220A8397B1DCDAFULL);
}

TEST(DeterministicRng, BelowStaysInRangeAndCoversIt) {
  DeterministicRng rng(7);
  std::vector<int> hits(5, 0);
  for (int i = 0; i < 5000; ++i) {
    const uint64_t v = rng.below(5);
    ASSERT_LT(v, 5u);
    ++hits[v];
  }
  for (int h : hits) EXPECT_GT(h, 800);  // expected 1000 each
}

TEST(DeterministicRng, UniformAndNormalHaveTheRightMoments) {
  DeterministicRng rng(3);
  double sum = 0, sum_normal = 0, sum_normal_sq = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    const double z = rng.normal();
    sum_normal += z;
    sum_normal_sq += z * z;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.01);
  EXPECT_NEAR(sum_normal / n, 0.0, 0.03);
  EXPECT_NEAR(sum_normal_sq / n, 1.0, 0.05);
}

TEST(DeterministicRng, ShuffleIsAReproduciblePermutation) {
  std::vector<int> a(20), b(20);
  std::iota(a.begin(), a.end(), 0);
  b = a;
  DeterministicRng r1(11), r2(11);
  r1.shuffle(a);
  r2.shuffle(b);
  EXPECT_EQ(a, b);
  std::vector<int> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int> expected(20);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(sorted, expected);
  EXPECT_NE(a, expected);
}

TEST(DeterministicRng, DerivedStreamsAreIndependentOfEachOther) {
  DeterministicRng s0 = DeterministicRng::derive(5, 0);
  DeterministicRng s1 = DeterministicRng::derive(5, 1);
  DeterministicRng s0_again = DeterministicRng::derive(5, 0);
  const uint64_t v0 = s0.next_u64();
  EXPECT_NE(v0, s1.next_u64());
  EXPECT_EQ(v0, s0_again.next_u64());
}

}  // namespace
}  // namespace cmaf
