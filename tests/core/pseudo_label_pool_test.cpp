#include "core/pseudo_label_pool.h"

#include <H5Cpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cluster/local_communicator.h"
#include "common/error.h"
#include "tests/temp_dir.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;

// Counts per class: background, then organs. predicted = teacher argmax pixels, confident = of
// those at or above the base threshold.
TEST(PoolThresholds, FixedKeepsTheBaseForEveryClass) {
  EXPECT_EQ(pool_thresholds(ThresholdMode::kFixed, 0.8, {100, 50, 10}, {90, 40, 0}),
            (std::vector<double>{0.8, 0.8, 0.8}));
}

TEST(PoolThresholds, AdaptiveLowersTheBarForOrgansTheTeacherIsRarelySureOf) {
  // Acceptance 0.8 (the best), 0.4 and 0 (and 0 for an organ never predicted).
  const auto t = pool_thresholds(ThresholdMode::kAdaptive, 0.8, {1000, 100, 100, 50, 0}, {10, 80, 40, 0, 0});
  ASSERT_EQ(t.size(), 5U);
  EXPECT_DOUBLE_EQ(t[0], 0.8);              // background is not adapted
  EXPECT_DOUBLE_EQ(t[1], 0.8);              // the best organ keeps the base
  EXPECT_DOUBLE_EQ(t[2], 0.8 * 0.75);       // half the best acceptance
  EXPECT_DOUBLE_EQ(t[3], 0.4);              // none accepted: base / 2
  EXPECT_DOUBLE_EQ(t[4], 0.4);
}

TEST(PoolThresholds, AdaptiveStartsAnEarlyTeacherAtHalfTheBase) {
  // No organ pixel reaches the base threshold (measured on BTCV at step 200 of a 2000-step run):
  // with the base kept, no organ would ever enter the pool.
  EXPECT_EQ(pool_thresholds(ThresholdMode::kAdaptive, 0.8, {18000, 1000, 200}, {2600, 0, 0}),
            (std::vector<double>{0.8, 0.4, 0.4}));
}

// The organ gate. Shares measured on BTCV (2 labeled cases, pool of 10 unlabeled at 128 x 128,
// 18.8M pixels): liver prior 4.0 %, stomach 0.94 %, left kidney 0.42 %, spleen 0.65 %.
TEST(PriorGate, AcceptsAnOrganWhoseConfidentShareIsWithinTheRatioOfItsPrior) {
  const std::vector<double> prior{0.9, 0.04, 0.0094, 0.0042, 0.0065};
  const double pixels = 18.8e6;
  // Liver at 1.17M (1.5x its prior) passes; stomach 2.09M (11.8x) and liver 80k (0.1x) do not;
  // left kidney 23k (0.29x) and spleen 14k (0.11x) are too sparse at ratio 3.
  EXPECT_EQ(prior_gate(3.0, prior, {15e6, 1.17e6, 2.09e6, 23e3, 14e3}, pixels),
            (std::vector<bool>{true, true, false, false, false}));
  EXPECT_EQ(prior_gate(3.0, prior, {15e6, 80e3, 0.3e6, 0.05e6, 0.06e6}, pixels),
            (std::vector<bool>{true, false, true, true, true}));
  // The band's edges are inside it.
  EXPECT_EQ(prior_gate(2.0, {0.5, 0.25}, {0, 0.125 * 64}, 64), (std::vector<bool>{true, true}));
  EXPECT_EQ(prior_gate(2.0, {0.5, 0.25}, {0, 0.5 * 64}, 64), (std::vector<bool>{true, true}));
  EXPECT_EQ(prior_gate(2.0, {0.5, 0.25}, {0, 0.12 * 64}, 64), (std::vector<bool>{true, false}));
}

TEST(PriorGate, OffOrWithoutAPriorEveryOrganPasses) {
  EXPECT_EQ(prior_gate(0.0, {0.9, 0.1}, {100, 0}, 100), (std::vector<bool>{true, true}));
  // An organ the labeled cases do not hold cannot be judged; background is never gated.
  EXPECT_EQ(prior_gate(2.0, {1.0, 0.0}, {0, 50}, 100), (std::vector<bool>{true, true}));
  // An empty pool: every organ with a prior is below its band.
  EXPECT_EQ(prior_gate(2.0, {0.9, 0.1}, {0, 0}, 0), (std::vector<bool>{true, false}));
}

TEST(PriorGate, PriorSharesComeFromTheLabeledTrainingCasesOnly) {
  datastore::DatasetManifest manifest;
  auto add = [&](datastore::Split split, bool labeled, std::vector<int64_t> voxels) {
    datastore::ManifestCase c;
    c.split = split;
    c.labeled = labeled;
    c.has_label = true;
    c.class_voxels = std::move(voxels);
    manifest.cases.push_back(c);
  };
  add(datastore::Split::kTrain, true, {60, 30, 10});
  add(datastore::Split::kTrain, true, {20, 10, 70});
  add(datastore::Split::kTrain, false, {0, 1000, 0});  // unlabeled: its label is for evaluation only
  add(datastore::Split::kTest, true, {0, 0, 1000});
  EXPECT_EQ(labeled_class_shares(manifest, 3), (std::vector<double>{0.4, 0.2, 0.4}));
  manifest.cases.resize(0);
  EXPECT_EQ(labeled_class_shares(manifest, 3), (std::vector<double>{0.0, 0.0, 0.0}));
}

// A pool version written by hand: one case of 2 slices at 6 x 6, label = pixel index mod 3,
// every pixel fully confident.
class PoolTargetsTest : public ::testing::Test {
 protected:
  static constexpr int64_t kSize = 6;
  void write_version(int64_t version, const nlohmann::json& pool) {
    const fs::path folder = fs::path(run_.path()) / "pool" / ("v00000" + std::to_string(version));
    fs::create_directories(folder);
    std::ofstream(folder / "POOL.json") << pool.dump();
    H5::H5File h5((folder / "rank-00000.h5").string(), H5F_ACC_TRUNC);
    H5::Group group = h5.createGroup("c0");
    const hsize_t dims[3] = {2, kSize, kSize};
    H5::DataSpace space(3, dims);
    std::vector<uint8_t> label(2 * kSize * kSize), confidence(label.size(), 255);
    for (size_t p = 0; p < label.size(); ++p) label[p] = static_cast<uint8_t>(p % 3);
    group.createDataSet("label", H5::PredType::STD_U8LE, space).write(label.data(), H5::PredType::NATIVE_UINT8);
    group.createDataSet("confidence", H5::PredType::STD_U8LE, space)
        .write(confidence.data(), H5::PredType::NATIVE_UINT8);
  }
  PoolTargets targets_of(int64_t version) {
    PoolOptions o;
    o.run_dir = run_.path();
    o.input_size = kSize;
    o.classes = 3;
    PseudoLabelPool pool(o, world_);
    sharding::RankShard shard;
    shard.unlabeled.push_back({"c0", "cases/c0.h5", "default", 2});
    pool.load(version, shard);
    return pool.targets({{"cases/c0.h5", 1}}, {datastore::GeometricParams{}});
  }
  test::TempDir run_;
  cluster::LocalCommunicator world_;
};

TEST_F(PoolTargetsTest, AnOrganTheGateLeftOutIsIgnoredWhereverTheTeacherLabeledIt) {
  write_version(1, {{"thresholds", {0.8, 0.8, 0.8}}, {"accepted", {true, false, true}}, {"ranks", 1}});
  const PoolTargets t = targets_of(1);
  const auto* label = t.labels.data_ptr<int64_t>();
  const auto* confidence = t.confidence.data_ptr<float>();
  for (int64_t p = 0; p < kSize * kSize; ++p) {
    const int64_t stored = (kSize * kSize + p) % 3;  // slice 1
    EXPECT_EQ(label[p], stored == 1 ? -1 : stored) << "pixel " << p;
    EXPECT_EQ(confidence[p], stored == 1 ? 0.0F : 1.0F) << "pixel " << p;
  }
}

TEST_F(PoolTargetsTest, AVersionFromBeforeTheGateAcceptsEveryOrganAndABadFlagListIsNamed) {
  write_version(1, {{"thresholds", {0.8, 0.8, 0.8}}, {"ranks", 1}});
  const PoolTargets t = targets_of(1);
  EXPECT_EQ(t.labels.min().item<int64_t>(), 0);
  EXPECT_EQ(t.labels.max().item<int64_t>(), 2);
  write_version(2, {{"thresholds", {0.8, 0.8, 0.8}}, {"accepted", {true, false}}, {"ranks", 1}});
  try {
    targets_of(2);
    FAIL() << "loaded a pool version with 2 gate flags for 3 classes";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("v000002/POOL.json: field 'accepted' holds 2 flags"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace cmaf::core
