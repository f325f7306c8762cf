#include "sharding/shard_plan.h"

#include <algorithm>
#include <numeric>

#include "common/error.h"
#include "common/random.h"

namespace cmaf::sharding {
namespace {

using Stream = std::vector<ShardCase> RankShard::*;

std::vector<int> allowed_ranks(const ShardPlanOptions& o, const std::string& site) {
  const auto it = o.site_ranks.find(site);
  std::vector<int> ranks;
  if (it == o.site_ranks.end() || it->second.empty()) {
    ranks.resize(static_cast<size_t>(o.world_size));
    std::iota(ranks.begin(), ranks.end(), 0);
  } else {
    ranks = it->second;
  }
  return ranks;
}

// LPT into bins; bin b becomes rank permutation[b].
void assign_stream(std::vector<ShardCase> cases, const ShardPlanOptions& o, const std::vector<int>& permutation,
                   Stream stream, int64_t RankShard::*total, ShardPlan& plan, const char* label) {
  std::sort(cases.begin(), cases.end(), [](const ShardCase& a, const ShardCase& b) {
    return a.slices != b.slices ? a.slices > b.slices : a.id < b.id;
  });
  std::vector<int64_t> load(static_cast<size_t>(o.world_size), 0);
  std::vector<std::vector<ShardCase>> bins(static_cast<size_t>(o.world_size));
  for (const ShardCase& c : cases) {
    int best = -1;
    for (int bin : allowed_ranks(o, c.site)) {
      if (best < 0 || load[static_cast<size_t>(bin)] < load[static_cast<size_t>(best)]) best = bin;
    }
    bins[static_cast<size_t>(best)].push_back(c);
    load[static_cast<size_t>(best)] += c.slices;
  }
  // More ranks than cases: an empty bin shares a case (bins spread over the cases in order).
  for (int bin = 0; bin < o.world_size && !cases.empty(); ++bin) {
    if (!bins[static_cast<size_t>(bin)].empty()) continue;
    for (size_t k = 0; k < cases.size(); ++k) {
      const ShardCase& c = cases[(static_cast<size_t>(bin) + k) % cases.size()];
      const std::vector<int> allowed = allowed_ranks(o, c.site);
      if (std::find(allowed.begin(), allowed.end(), bin) == allowed.end()) continue;
      bins[static_cast<size_t>(bin)].push_back(c);
      const int rank = permutation[static_cast<size_t>(bin)];
      plan.ranks[static_cast<size_t>(rank)].shares_cases = true;
      plan.notes.push_back(str("rank ", rank, " shares ", label, " case ", c.id, " with another rank (",
                               o.world_size, " ranks, ", cases.size(), " ", label, " cases)"));
      break;
    }
  }
  for (int bin = 0; bin < o.world_size; ++bin) {
    RankShard& shard = plan.ranks[static_cast<size_t>(permutation[static_cast<size_t>(bin)])];
    shard.*stream = bins[static_cast<size_t>(bin)];
    for (const ShardCase& c : shard.*stream) shard.*total += c.slices;
  }
}

}  // namespace

ShardPlan plan_shards(const datastore::DatasetManifest& manifest, const ShardPlanOptions& o) {
  if (o.world_size < 1) throw InputError("world size", "", str(o.world_size, ", expected >= 1"));
  for (const auto& [site, ranks] : o.site_ranks) {
    for (int r : ranks) {
      if (r < 0 || r >= o.world_size) {
        throw InputError("site affinity", site, str("rank ", r, " is outside 0..", o.world_size - 1));
      }
    }
  }
  std::vector<ShardCase> labeled, unlabeled;
  for (const datastore::ManifestCase& c : manifest.cases) {
    if (c.split != datastore::Split::kTrain) continue;
    (c.labeled ? labeled : unlabeled).push_back({c.id, c.file, c.site, c.slices()});
  }
  ShardPlan plan;
  plan.ranks.resize(static_cast<size_t>(o.world_size));
  // Bins are dealt to ranks by a permutation: identity, or seeded per epoch.
  std::vector<int> permutation(static_cast<size_t>(o.world_size));
  std::iota(permutation.begin(), permutation.end(), 0);
  if (o.reshuffle_each_epoch && o.site_ranks.empty()) {
    DeterministicRng rng = DeterministicRng::derive(o.seed, static_cast<uint64_t>(o.epoch));
    rng.shuffle(permutation);
  }
  assign_stream(labeled, o, permutation, &RankShard::labeled, &RankShard::labeled_slices, plan, "labeled");
  assign_stream(unlabeled, o, permutation, &RankShard::unlabeled, &RankShard::unlabeled_slices, plan, "unlabeled");
  if (!o.site_ranks.empty()) plan.notes.push_back("site affinity on: per-epoch reshuffle is off");
  return plan;
}

}  // namespace cmaf::sharding
