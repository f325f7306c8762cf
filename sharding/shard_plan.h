// Who reads what: the assignment of a dataset's training cases to ranks.
//
// A pure function of (manifest, world size, epoch, seed, options): every rank computes the same
// plan without communicating, and a resumed run with another world size simply re-plans.
// Labeled and unlabeled cases are balanced separately by slice count, largest case first onto
// the least-loaded rank (LPT), so on every rank the stream sizes differ by at most the largest
// case. Each epoch the plan's bins are dealt to ranks by a seeded permutation when
// reshuffle_each_epoch is set (balance unchanged, files change hands). With more ranks than
// cases, ranks left empty share the largest cases (stated in `notes`). With site affinity, a
// site's cases go only to the ranks listed for it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "datastore/manifest.h"

namespace cmaf::sharding {

struct ShardCase {
  std::string id;
  std::string file;  // relative to the dataset folder
  std::string site;
  int64_t slices = 0;
};

struct RankShard {
  std::vector<ShardCase> labeled;
  std::vector<ShardCase> unlabeled;
  int64_t labeled_slices = 0;
  int64_t unlabeled_slices = 0;
  bool shares_cases = false;  // some of its cases are also another rank's
};

struct ShardPlanOptions {
  int world_size = 1;
  int64_t epoch = 0;
  uint64_t seed = 0;
  bool reshuffle_each_epoch = false;
  // Site affinity: site name -> the ranks allowed to read its cases (empty: any rank).
  std::map<std::string, std::vector<int>> site_ranks;
};

struct ShardPlan {
  std::vector<RankShard> ranks;
  std::vector<std::string> notes;  // things the log should say (shared cases, affinity)
};

// Throws InputError for a world size < 1, affinity ranks out of range, or a site whose allowed
// ranks are empty.
ShardPlan plan_shards(const datastore::DatasetManifest& manifest, const ShardPlanOptions& options);

}  // namespace cmaf::sharding
