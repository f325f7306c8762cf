#include "datastore/batch_loader.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include "common/error.h"
#include "datastore/manifest.h"
#include "datastore/synth.h"
#include "tests/temp_dir.h"

namespace cmaf::datastore {
namespace {

struct Dataset {
  test::TempDir dir;
  std::string root;
  std::vector<std::string> labeled;
  std::vector<std::string> unlabeled;
  std::vector<std::string> all;
};

// 5 phantom cases of 6 slices at 40 x 40: 2 labeled, 3 unlabeled (labels for evaluation only).
const Dataset& dataset() {
  static const std::unique_ptr<Dataset> d = [] {
    auto out = std::make_unique<Dataset>();
    out->root = out->dir.file("ds");
    SynthOptions o;
    o.out = out->root;
    o.cases = 5;
    o.phantom = {40, 6, 4};
    o.seed = 2;
    o.labeled_cases = "2";
    run_synth(o);
    for (const ManifestCase& c : load_manifest(out->root).cases) {
      (c.labeled ? out->labeled : out->unlabeled).push_back(c.file);
      out->all.push_back(c.file);
    }
    return out;
  }();
  return *d;
}

StepSource source_of(const Dataset& d, int64_t labeled_batch = 2, int64_t unlabeled_batch = 2) {
  return [&d, labeled_batch, unlabeled_batch](int64_t step) {
    StepRequest r;
    for (int64_t i = 0; i < labeled_batch; ++i) {
      r.labeled.push_back({d.labeled[static_cast<size_t>(step + i) % d.labeled.size()], (step * 3 + i) % 6});
    }
    for (int64_t i = 0; i < unlabeled_batch; ++i) {
      r.unlabeled.push_back({d.unlabeled[static_cast<size_t>(step + i) % d.unlabeled.size()], (step + 2 * i) % 6});
    }
    return r;
  };
}

LoaderOptions options(const Dataset& d) {
  LoaderOptions o;
  o.dataset_dir = d.root;
  o.input_size = 32;
  o.threads = 2;
  o.shard_files = d.all;
  o.seed = 11;
  o.rank = 1;
  return o;
}

struct Flat {
  std::vector<float> labeled_image, weak, strong;
  std::vector<uint8_t> label;
  bool operator==(const Flat& o) const {
    return labeled_image == o.labeled_image && weak == o.weak && strong == o.strong && label == o.label;
  }
};

std::vector<Flat> read_steps(LoaderOptions o, int64_t first, int64_t count) {
  BatchLoader loader(std::move(o), source_of(dataset()), first);
  std::vector<Flat> out;
  for (int64_t k = 0; k < count; ++k) {
    Batch b = loader.next();
    EXPECT_EQ(b.step, first + k);
    out.push_back({b.labeled_image, b.weak_image, b.strong_image, b.labeled_label});
  }
  return out;
}

TEST(BatchLoader, BatchesHaveTheNetworkShapeAndValidLabels) {
  BatchLoader loader(options(dataset()), source_of(dataset(), 3, 2), 0);
  const Batch b = loader.next();
  EXPECT_EQ(b.size, 32);
  EXPECT_EQ(b.labeled_count(), 3);
  EXPECT_EQ(b.unlabeled_count(), 2);
  EXPECT_EQ(b.labeled_image.size(), 3u * 32 * 32);
  EXPECT_EQ(b.labeled_label.size(), 3u * 32 * 32);
  EXPECT_EQ(b.weak_image.size(), 2u * 32 * 32);
  EXPECT_EQ(b.unlabeled_geometry.size(), 2u);
  for (uint8_t c : b.labeled_label) ASSERT_LE(c, 4);
  int64_t foreground = 0;
  for (uint8_t c : b.labeled_label) foreground += c > 0;
  EXPECT_GT(foreground, 0);
}

TEST(BatchLoader, StepsAreIdenticalWhateverTheThreadsCacheOrResumePoint) {
  const Dataset& d = dataset();
  const std::vector<Flat> uninterrupted = read_steps(options(d), 0, 10);
  LoaderOptions one_thread_no_cache = options(d);
  one_thread_no_cache.threads = 1;
  one_thread_no_cache.cache_budget_bytes = 0;
  const std::vector<Flat> resumed = read_steps(one_thread_no_cache, 4, 6);  // steps 4..9
  for (size_t k = 0; k < resumed.size(); ++k) EXPECT_TRUE(resumed[k] == uninterrupted[k + 4]) << "step " << k + 4;
  EXPECT_FALSE(uninterrupted[4] == uninterrupted[5]);
  LoaderOptions other_rank = options(d);
  other_rank.rank = 0;
  EXPECT_FALSE(read_steps(other_rank, 4, 1)[0] == uninterrupted[4]);  // same slices, other augmentation
}

TEST(BatchLoader, WeakAndStrongViewsShareTheGeometry) {
  LoaderOptions o = options(dataset());
  o.augment.strong_intensity_probability = 0.0;  // strong = weak + intensity: without it they are equal
  BatchLoader loader(o, source_of(dataset()), 0);
  for (int k = 0; k < 4; ++k) {
    const Batch b = loader.next();
    EXPECT_EQ(b.weak_image, b.strong_image);
  }
  BatchLoader jittered(options(dataset()), source_of(dataset()), 0);
  int differ = 0;
  for (int k = 0; k < 4; ++k) {
    const Batch b = jittered.next();
    differ += b.weak_image != b.strong_image;
  }
  EXPECT_GT(differ, 0);
}

TEST(BatchLoader, TheShardIsCachedOnlyWhenItFitsTheBudget) {
  LoaderOptions o = options(dataset());
  {
    BatchLoader loader(o, source_of(dataset()), 0);
    for (int k = 0; k < 6; ++k) loader.next();
    const LoaderStats s = loader.stats();
    EXPECT_TRUE(s.cache_enabled);
    EXPECT_EQ(s.shard_bytes, 2 * 6 * 40 * 40 * 5 + 3 * 6 * 40 * 40 * 4);
    EXPECT_EQ(s.cached_cases, 5);
  }
  o.cache_budget_bytes = 1000;
  BatchLoader loader(o, source_of(dataset()), 0);
  loader.next();
  EXPECT_FALSE(loader.stats().cache_enabled);
  EXPECT_EQ(loader.stats().cached_cases, 0);
}

TEST(BatchLoader, NeverBuildsMoreThanTheQueueAhead) {
  LoaderOptions o = options(dataset());
  o.queue_steps = 2;
  BatchLoader loader(o, source_of(dataset()), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // readers fill the queue, then wait
  EXPECT_LE(loader.stats().slices_built, 2 * 4);
  for (int k = 0; k < 8; ++k) {
    loader.next();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_LE(loader.stats().max_buffered, 2);
  EXPECT_EQ(loader.next_step(), 8);
}

TEST(BatchLoader, AReaderErrorSurfacesAtItsStepNamingCaseAndSlice) {
  const Dataset& d = dataset();
  StepSource bad = [&d](int64_t step) {
    StepRequest r;
    r.labeled.push_back({d.labeled[0], step == 3 ? 99 : 0});
    return r;
  };
  for (int64_t budget : {int64_t{0}, kDefaultCacheBudgetBytes}) {
    LoaderOptions o = options(d);
    o.cache_budget_bytes = budget;
    BatchLoader loader(o, bad, 0);
    for (int k = 0; k < 3; ++k) EXPECT_NO_THROW(loader.next());
    try {
      loader.next();
      FAIL() << "slice 99 was read";
    } catch (const IoError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(d.labeled[0]), std::string::npos) << m;
      EXPECT_NE(m.find("slice 99"), std::string::npos) << m;
      EXPECT_NE(m.find("step 3"), std::string::npos) << m;
    }
  }
}

TEST(BatchLoader, AnEvaluationOnlyLabelIsRefusedToTheLabeledStream) {
  const Dataset& d = dataset();
  StepSource wrong = [&d](int64_t) {
    StepRequest r;
    r.labeled.push_back({d.unlabeled[0], 1});
    return r;
  };
  BatchLoader loader(options(d), wrong, 0);
  try {
    loader.next();
    FAIL() << "an unlabeled case fed the supervised loss";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(d.unlabeled[0]), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("evaluation"), std::string::npos) << e.what();
  }
}

TEST(BatchLoader, AMissingFileIsReportedNotCrashedOn) {
  const Dataset& d = dataset();
  StepSource missing = [](int64_t) {
    StepRequest r;
    r.unlabeled.push_back({"cases/not_there.h5", 0});
    return r;
  };
  LoaderOptions o = options(d);
  BatchLoader loader(o, missing, 0);
  EXPECT_THROW(loader.next(), IoError);
  o.shard_files.push_back("cases/not_there.h5");
  EXPECT_THROW(BatchLoader(o, missing, 0), InputError);  // not in the manifest: refused up front
}

TEST(BatchLoader, BadOptionsNameTheOption) {
  LoaderOptions o = options(dataset());
  o.threads = 0;
  try {
    BatchLoader loader(o, source_of(dataset()), 0);
    FAIL() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--loader-threads"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cmaf::datastore
