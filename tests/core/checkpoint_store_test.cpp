#include "core/checkpoint_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/temp_dir.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;

void stage(const std::string& run, int64_t step, const std::string& content) {
  fs::create_directories(staging_folder(run, step));
  std::ofstream(fs::path(staging_folder(run, step)) / "model.pt") << content;
  std::ofstream(fs::path(staging_folder(run, step)) / rank_part_name(0)) << "rng";
}

TEST(CheckpointStore, PublishedFoldersVerifyAndStagingIsNeverACheckpoint) {
  test::TempDir run;
  stage(run.path(), 10, "weights-10");
  EXPECT_TRUE(list_checkpoints(run.path()).empty());  // staging only
  const std::string published = publish_checkpoint(run.path(), 10, {{"world_size", 1}});
  EXPECT_EQ(published, checkpoint_folder(run.path(), 10));
  EXPECT_FALSE(fs::exists(staging_folder(run.path(), 10)));
  std::string problem;
  const auto info = verify_checkpoint(published, &problem);
  ASSERT_TRUE(info.has_value()) << problem;
  EXPECT_EQ(info->step, 10);
  EXPECT_EQ(info->manifest["world_size"], 1);
  stage(run.path(), 20, "weights-20");  // a save killed before publication
  std::vector<std::string> skipped;
  EXPECT_EQ(latest_valid_checkpoint(run.path(), &skipped)->step, 10);
  EXPECT_TRUE(skipped.empty());
}

TEST(CheckpointStore, MissingOrChangedFilesAreNamed) {
  test::TempDir run;
  stage(run.path(), 5, "abc");
  const std::string folder = publish_checkpoint(run.path(), 5, {});
  std::ofstream(fs::path(folder) / "model.pt") << "abd";
  std::string problem;
  EXPECT_FALSE(verify_checkpoint(folder, &problem));
  EXPECT_NE(problem.find("model.pt: checksum mismatch"), std::string::npos) << problem;
  fs::remove(fs::path(folder) / "model.pt");
  EXPECT_FALSE(verify_checkpoint(folder, &problem));
  EXPECT_NE(problem.find("missing"), std::string::npos) << problem;
  fs::remove(fs::path(folder) / kCheckpointManifest);
  EXPECT_FALSE(verify_checkpoint(folder, &problem));
  EXPECT_NE(problem.find(kCheckpointManifest), std::string::npos) << problem;
}

TEST(CheckpointStore, PruningKeepsTheNewestAndTheBest) {
  test::TempDir run;
  for (int64_t step : {1, 2, 3, 4, 5}) {
    stage(run.path(), step, "w");
    publish_checkpoint(run.path(), step, {});
  }
  stage(run.path(), 6, "w");  // leftover staging of a killed save
  prune_checkpoints(run.path(), 2, 2);
  const std::vector<std::string> left = list_checkpoints(run.path());
  ASSERT_EQ(left.size(), 3u);
  EXPECT_EQ(left[0], checkpoint_folder(run.path(), 2));
  EXPECT_EQ(left[2], checkpoint_folder(run.path(), 5));
  EXPECT_FALSE(fs::exists(staging_folder(run.path(), 6)));
}

}  // namespace
}  // namespace cmaf::core
