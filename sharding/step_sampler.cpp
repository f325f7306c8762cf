#include "sharding/step_sampler.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "common/error.h"

namespace cmaf::sharding {
namespace {

constexpr uint64_t kLabeledStream = 1;
constexpr uint64_t kUnlabeledStream = 2;

}  // namespace

StepSampler::StepSampler(const RankShard& shard, SamplerOptions options, int rank, const ForegroundIndex* index)
    : shard_(shard), options_(std::move(options)), rank_(rank), index_(index) {
  if (options_.foreground_fraction < 0.0 || options_.foreground_fraction > 1.0) {
    throw InputError("--foreground-fraction", "", str(options_.foreground_fraction, ", expected [0, 1]"));
  }
  if (options_.foreground_fraction > 0.0 && index_ == nullptr) {
    throw InternalError("foreground oversampling needs the per-class slice index");
  }
  if (index_ != nullptr) {
    std::set<int> present;
    for (const ShardCase& c : shard_.labeled) {
      const auto it = index_->find(c.id);
      if (it == index_->end()) continue;
      for (const auto& [cls, slices] : it->second) {
        if (cls > 0 && !slices.empty()) present.insert(cls);
      }
    }
    classes_present_.assign(present.begin(), present.end());
  }
}

SliceRef StepSampler::draw_foreground(const std::vector<ShardCase>& cases, DeterministicRng& rng) const {
  const int cls = classes_present_[rng.below(classes_present_.size())];
  // Cases holding the class, weighted by how many of their slices contain it.
  std::vector<std::pair<const ShardCase*, const std::vector<int64_t>*>> holders;
  int64_t total = 0;
  for (const ShardCase& c : cases) {
    const auto it = index_->find(c.id);
    if (it == index_->end()) continue;
    const auto slices = it->second.find(cls);
    if (slices == it->second.end() || slices->second.empty()) continue;
    holders.emplace_back(&c, &slices->second);
    total += static_cast<int64_t>(slices->second.size());
  }
  int64_t pick = static_cast<int64_t>(rng.below(static_cast<uint64_t>(total)));
  for (const auto& [c, slices] : holders) {
    if (pick < static_cast<int64_t>(slices->size())) return {c, (*slices)[static_cast<size_t>(pick)]};
    pick -= static_cast<int64_t>(slices->size());
  }
  return {holders.back().first, holders.back().second->back()};
}

std::vector<SliceRef> StepSampler::draw(const std::vector<ShardCase>& cases, int64_t batch, int64_t step,
                                        uint64_t stream, int64_t forced) const {
  std::vector<SliceRef> out;
  if (cases.empty() || batch <= 0) return out;
  DeterministicRng rng = DeterministicRng::derive(
      options_.seed ^ (static_cast<uint64_t>(rank_) << 40) ^ (stream << 56), static_cast<uint64_t>(step));
  std::vector<double> cumulative;
  double total = 0.0;
  for (const ShardCase& c : cases) {
    const auto w = options_.site_weights.find(c.site);
    total += static_cast<double>(c.slices) * (w == options_.site_weights.end() ? 1.0 : w->second);
    cumulative.push_back(total);
  }
  for (int64_t i = 0; i < batch; ++i) {
    if (i < forced && !classes_present_.empty()) {
      out.push_back(draw_foreground(cases, rng));
      continue;
    }
    const double u = rng.uniform() * total;
    const size_t k = std::min(cases.size() - 1, static_cast<size_t>(std::upper_bound(cumulative.begin(), cumulative.end(), u) -
                                                                    cumulative.begin()));
    out.push_back({&cases[k], static_cast<int64_t>(rng.below(static_cast<uint64_t>(cases[k].slices)))});
  }
  return out;
}

std::vector<SliceRef> StepSampler::labeled(int64_t step) const {
  const auto forced = static_cast<int64_t>(std::llround(options_.foreground_fraction * options_.labeled_batch));
  return draw(shard_.labeled, options_.labeled_batch, step, kLabeledStream, forced);
}

std::vector<SliceRef> StepSampler::unlabeled(int64_t step) const {
  if (step < options_.unlabeled_from_step) return {};
  return draw(shard_.unlabeled, options_.unlabeled_batch, step, kUnlabeledStream, 0);
}

int64_t steps_per_epoch(const ShardPlan& plan, int64_t labeled_batch) {
  int64_t largest = 0;
  for (const RankShard& r : plan.ranks) largest = std::max(largest, r.labeled_slices);
  return std::max<int64_t>(1, (largest + labeled_batch - 1) / std::max<int64_t>(1, labeled_batch));
}

datastore::StepRequest step_request(const StepSampler& sampler, int64_t step) {
  datastore::StepRequest request;
  for (const SliceRef& ref : sampler.labeled(step)) request.labeled.push_back({ref.source->file, ref.slice});
  for (const SliceRef& ref : sampler.unlabeled(step)) request.unlabeled.push_back({ref.source->file, ref.slice});
  return request;
}

std::vector<std::string> shard_files(const RankShard& shard) {
  std::vector<std::string> files;
  for (const ShardCase& c : shard.labeled) files.push_back(c.file);
  for (const ShardCase& c : shard.unlabeled) files.push_back(c.file);
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

}  // namespace cmaf::sharding
