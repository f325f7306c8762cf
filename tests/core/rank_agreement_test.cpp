// The checks that every rank runs the same job (core/rank_agreement.h), with ranks as threads:
// every rank takes the same path through the collectives and throws on a mismatch, the ranks
// that differ naming what differs and the others naming those ranks.
#include "core/rank_agreement.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/local_communicator.h"
#include "common/error.h"
#include "tests/temp_dir.h"

namespace cmaf::core {
namespace {
namespace fs = std::filesystem;

// Runs `body` on `n` thread-ranks; each rank's InputError message, or "" where it threw none.
std::vector<std::string> on_ranks(int n, const std::function<void(int, cluster::Communicator&)>& body) {
  std::vector<std::unique_ptr<cluster::Communicator>> group = cluster::make_local_group(n);
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r, *group[static_cast<size_t>(r)]);
      } catch (const InputError& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return errors;
}

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class RankAgreement : public ::testing::Test {
 protected:
  RankAgreement() {
    write(fs::path(dir_.path()) / "ds" / "manifest.json", R"({"cases": [{"id": "a", "split": "train"}]})");
    base_.data = (fs::path(dir_.path()) / "ds").string();
    base_.run_dir = (fs::path(dir_.path()) / "run").string();
    base_.lr = 0.002;
  }
  test::TempDir dir_;
  TrainConfig base_;
};

TEST_F(RankAgreement, SameOptionsPassAndPerRankSettingsMayDiffer) {
  const auto errors = on_ranks(3, [&](int r, cluster::Communicator& world) {
    TrainConfig c = base_;
    c.threads = r + 1;
    c.stall_seconds = 100.0 + r;
    c.loader_threads = r;
    if (r == 2) c.data += "/";  // the same folder, spelled otherwise
    check_options_agree(c, world);
  });
  for (const std::string& e : errors) EXPECT_EQ(e, "");
}

TEST_F(RankAgreement, ARankWithOtherOptionsNamesThemAndTheOthersNameIt) {
  const auto errors = on_ranks(3, [&](int r, cluster::Communicator& world) {
    TrainConfig c = base_;
    if (r == 2) {
      c.lr = 0.5;
      c.input_size = 96;
    }
    check_options_agree(c, world);
  });
  EXPECT_TRUE(contains(errors[2], "--input-size, --lr: --input-size 96 on this rank,")) << errors[2];
  EXPECT_TRUE(contains(errors[2], "--lr 0.5 on this rank, 0.002 on rank 0")) << errors[2];
  for (int r : {0, 1}) {
    EXPECT_TRUE(contains(errors[static_cast<size_t>(r)], "options: rank(s) 2 were started with other options"))
        << errors[static_cast<size_t>(r)];
  }
  EXPECT_FALSE(contains(errors[2], "rank 0 may be the one"));
}

TEST_F(RankAgreement, RankZeroTheOddOneIsPointedAt) {
  const auto errors = on_ranks(3, [&](int r, cluster::Communicator& world) {
    TrainConfig c = base_;
    if (r != 0) c.lr = 0.5;
    check_options_agree(c, world);
  });
  EXPECT_TRUE(contains(errors[0], "rank(s) 1, 2 were started with other options")) << errors[0];
  for (int r : {1, 2}) {
    EXPECT_TRUE(contains(errors[static_cast<size_t>(r)], "all 2 ranks other than rank 0 agree among themselves"))
        << errors[static_cast<size_t>(r)];
  }
}

TEST_F(RankAgreement, SiteWeightsAreComparedByValueNotSpelling) {
  const auto same = on_ranks(3, [&](int r, cluster::Communicator& world) {
    TrainConfig c = base_;
    const char* spellings[] = {"hospitalA:3,hospitalB:1", "hospitalB:1.0,hospitalA:3", "hospitalA:3.0"};
    c.site_weights = spellings[r];
    check_options_agree(c, world);
  });
  for (const std::string& e : same) EXPECT_EQ(e, "");
  const auto other = on_ranks(2, [&](int r, cluster::Communicator& world) {
    TrainConfig c = base_;
    c.site_weights = r == 0 ? "hospitalA:3,hospitalB:1" : "hospitalB:3,hospitalA:1";
    check_options_agree(c, world);
  });
  EXPECT_TRUE(contains(other[1], "--site-weights {\"hospitalB\":3.0} on this rank, {\"hospitalA\":3.0} on rank 0"))
      << other[1];
  EXPECT_TRUE(contains(other[0], "rank(s) 1 were started with other options")) << other[0];
}

TEST_F(RankAgreement, TheDatasetIsComparedByItsManifestsContent) {
  const fs::path relaid = fs::path(dir_.path()) / "relaid";
  write(relaid / "manifest.json", "{\n  \"cases\" : [ { \"split\" : \"train\", \"id\" : \"a\" } ]\n}\n");
  const fs::path other = fs::path(dir_.path()) / "other";
  write(other / "manifest.json", R"({"cases": [{"id": "a", "split": "val"}]})");
  for (const auto& [copy, same] : {std::pair{relaid, true}, std::pair{other, false}}) {
    const auto errors = on_ranks(2, [&, copy = copy](int r, cluster::Communicator& world) {
      TrainConfig c = base_;
      if (r == 1) c.data = copy.string();
      check_options_agree(c, world);
    });
    if (same) {
      EXPECT_EQ(errors[0] + errors[1], "") << copy;
    } else {
      EXPECT_TRUE(contains(errors[1], "--data (manifest.json): --data (manifest.json) fingerprint")) << errors[1];
      EXPECT_TRUE(contains(errors[0], "rank(s) 1 were started with other options")) << errors[0];
    }
  }
}

TEST_F(RankAgreement, ASharedRunFolderPassesAndLeavesNothingBehind) {
  fs::create_directories(base_.run_dir);
  const auto errors = on_ranks(3, [&](int r, cluster::Communicator& world) {
    check_run_dir_shared(r == 1 ? base_.run_dir + "/." : base_.run_dir, world);
  });
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  for (const auto& entry : fs::directory_iterator(base_.run_dir)) ADD_FAILURE() << "left behind: " << entry.path();
}

TEST_F(RankAgreement, ARankThatDoesNotSeeTheRunFolderSaysSoAndTheOthersNameIt) {
  const std::string elsewhere = (fs::path(dir_.path()) / "elsewhere").string();
  fs::create_directories(base_.run_dir);
  fs::create_directories(elsewhere);
  const auto errors = on_ranks(3, [&](int r, cluster::Communicator& world) {
    check_run_dir_shared(r == 1 ? elsewhere : base_.run_dir, world);
  });
  EXPECT_TRUE(contains(errors[1], "elsewhere: --run-dir: not the folder rank 0 writes to, as seen from"))
      << errors[1];
  for (int r : {0, 2}) {
    EXPECT_TRUE(contains(errors[static_cast<size_t>(r)], "--run-dir: rank(s) 1 do not see this folder"))
        << errors[static_cast<size_t>(r)];
  }
  for (const auto& entry : fs::directory_iterator(base_.run_dir)) ADD_FAILURE() << "left behind: " << entry.path();
}

}  // namespace
}  // namespace cmaf::core
