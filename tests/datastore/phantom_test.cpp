#include "datastore/phantom.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

namespace cmaf::datastore {
namespace {

std::vector<int64_t> class_counts(const PhantomCase& c, int classes) {
  std::vector<int64_t> counts(static_cast<size_t>(classes) + 1, 0);
  for (uint8_t v : c.label) ++counts[v];
  return counts;
}

TEST(Phantom, DeterministicInSeedCaseAndSite) {
  const PhantomSpec spec{64, 8, 5};
  const PhantomCase a = generate_phantom_case(spec, 1, 3, 0);
  const PhantomCase b = generate_phantom_case(spec, 1, 3, 0);
  EXPECT_EQ(a.image, b.image);
  EXPECT_EQ(a.label, b.label);
  EXPECT_NE(a.label, generate_phantom_case(spec, 2, 3, 0).label);
  EXPECT_NE(a.label, generate_phantom_case(spec, 1, 4, 0).label);
  EXPECT_NE(a.image, generate_phantom_case(spec, 1, 3, 1).image);
}

// Shape test at two sizes: a shape right only by coincidence fails one of them.
TEST(Phantom, ShapesAndRangesAtTwoSizes) {
  for (const PhantomSpec& spec : {PhantomSpec{64, 8, 4}, PhantomSpec{96, 12, 6}}) {
    const PhantomCase c = generate_phantom_case(spec, 0, 0, 0);
    EXPECT_EQ(c.geometry.shape, (std::array<int64_t, 3>{spec.slices, spec.size, spec.size}));
    ASSERT_EQ(c.image.size(), static_cast<size_t>(spec.slices * spec.size * spec.size));
    EXPECT_GE(*std::min_element(c.image.begin(), c.image.end()), 0.0f);
    EXPECT_LE(*std::max_element(c.image.begin(), c.image.end()), 1.0f);
    EXPECT_LE(*std::max_element(c.label.begin(), c.label.end()), spec.classes);
  }
}

TEST(Phantom, ClassFrequenciesAreLongTailedAndEveryOrganAppears) {
  const PhantomSpec spec{128, 32, 8};
  std::vector<int64_t> total(9, 0);
  for (int i = 0; i < 4; ++i) {
    const auto counts = class_counts(generate_phantom_case(spec, 0, i, 0), 8);
    for (size_t k = 0; k < counts.size(); ++k) total[k] += counts[k];
  }
  for (size_t k = 1; k < total.size(); ++k) EXPECT_GT(total[k], 0) << "organ " << k;
  const int64_t largest = *std::max_element(total.begin() + 1, total.end());
  const int64_t smallest = *std::min_element(total.begin() + 1, total.end());
  EXPECT_GT(largest, 50 * smallest);  // abdominal CT: liver / gallbladder ~ 100x
}

TEST(Phantom, OrgansAreBrighterOrDarkerThanBackgroundSoTheyCanBeLearned) {
  const PhantomSpec spec{96, 16, 4};
  const PhantomCase c = generate_phantom_case(spec, 0, 0, 0);
  std::vector<double> sum(5, 0.0);
  std::vector<int64_t> n(5, 0);
  for (size_t i = 0; i < c.label.size(); ++i) {
    sum[c.label[i]] += c.image[i];
    ++n[c.label[i]];
  }
  std::vector<double> mean(5);
  for (int k = 0; k < 5; ++k) mean[k] = n[k] ? sum[k] / n[k] : 0.0;
  for (int k = 1; k < 4; ++k) {
    if (n[k] > 0 && n[k + 1] > 0) EXPECT_GT(std::abs(mean[k] - mean[k + 1]), 0.02) << k;
  }
}

}  // namespace
}  // namespace cmaf::datastore
