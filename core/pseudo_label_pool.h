// The pseudo-label pool: for every slice of the unlabeled training cases, the EMA teacher's label
// and confidence from the last refresh, with per-class confidence thresholds.
//
//   RUN/pool/v000003/rank-00001.h5   one rank's cases: /<case>/label, /<case>/confidence
//                                    (uint8, D x S x S at the network input; confidence x 255)
//   RUN/pool/v000003/POOL.json       version, step, thresholds, per-class and per-site statistics,
//                                    case -> file
//   RUN/pool/CURRENT                 the published version (written atomically, last)
//
// Protocol (a collective; every rank calls refresh() at the same step): each rank labels its
// shard's unlabeled slices with the teacher and writes its file atomically; per-class counts are
// all-reduced; the coordinator (rank 0) sets the thresholds, writes POOL.json, then CURRENT, and
// retires versions that are neither among the newest two nor named by a checkpoint. A reader
// only ever opens a version that CURRENT (or a checkpoint) names, so it never sees a half-written
// one. Thresholds: `fixed` uses the base threshold for every class; `adaptive` lowers it for
// classes the teacher is rarely confident about: tau_c = base * (0.5 + 0.5 * a_c / max a), a_c
// the share of class-c pixels at or above the base threshold (FlexMatch-like); while no organ
// reaches the base threshold at all (an early teacher), every organ gets base / 2.
//
// Batch-norm recalibration (`recalibrate_batch_norm`, `train --pool-recalibrate-bn`, on by
// default): before labeling, the teacher's running statistics are re-estimated on the slices it
// is about to label, because the statistics it inherits from the student belong to the
// student's weights, not to its averaged ones (model/batch_norm.h). Each rank forwards a random
// sample of its unlabeled slices (all of them up to ~64 MiB of input; 1024 at 128 px) in
// shuffled batches with the batch norms in training mode; the per-channel sums are added over
// ranks, so every rank labels with the same population statistics. The teacher's own
// statistics come back after the refresh.
//
// Organ gate (`prior_ratio` r > 0, `train --pool-prior-ratio`): a version accepts organ c only
// when the share of the pool's pixels the teacher labels c at or above the base threshold lies
// within [prior_c / r, prior_c * r], prior_c the share of class-c voxels in the labeled training
// cases (the manifest's counts; unlabeled cases' labels are never read). An organ outside the
// band is left out of that version (its pixels are ignored, so its LDC constraint is inactive).
// Two failures it stops, both measured on BTCV (BENCHMARKS.md): a teacher confident on a few
// thousand pixels of an organ (sparse targets the student cannot match, whose multiplier then
// runs to its cap), and targets that have drifted (stomach at 12x its prior share, most of it
// true background; liver at 0.1x). It checks amounts only: wrong pixels in the right amount
// pass (on BTCV the liver it kept was about half wrong). An organ the labeled cases do not hold
// is not gated.
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "datastore/manifest.h"
#include "datastore/slice_augment.h"
#include "model/cmaformer.h"
#include "sharding/shard_plan.h"

namespace cmaf::core {

enum class ThresholdMode { kFixed, kAdaptive };

struct PoolOptions {
  std::string run_dir;
  std::string dataset_dir;
  int64_t input_size = 0;
  int64_t classes = 0;
  double base_threshold = 0.8;
  ThresholdMode mode = ThresholdMode::kFixed;
  int64_t batch = 8;
  double prior_ratio = 0.0;  // > 0: the organ gate above; 0: every organ accepted
  bool recalibrate_batch_norm = true;  // the teacher's batch-norm statistics re-estimated first
};

struct PoolTargets {
  at::Tensor labels;      // [B, S, S] int64, -1 where not confident enough
  at::Tensor confidence;  // [B, S, S] float in [0, 1]: 1 where accepted, else 0
};

class PseudoLabelPool {
 public:
  PseudoLabelPool(PoolOptions options, cluster::Communicator& world);

  int64_t version() const { return version_; }
  // Collective. Labels this rank's unlabeled cases with `teacher`, publishes version + 1 and
  // loads it. Returns the POOL.json written (on every rank).
  nlohmann::json refresh(model::CmaformerImpl& teacher, const sharding::RankShard& shard, int64_t step);
  // Loads a published version (resume). Throws IoError naming the folder when it is gone.
  void load(int64_t version, const sharding::RankShard& shard);
  // Targets for a batch's unlabeled slices, warped with each sample's geometry like its views.
  PoolTargets targets(const std::vector<std::pair<std::string, int64_t>>& slices,
                      const std::vector<datastore::GeometricParams>& geometry) const;

 private:
  struct CaseLabels {
    int64_t slices = 0;
    std::vector<uint8_t> label;       // D x S x S
    std::vector<uint8_t> confidence;  // D x S x S, x 255
  };
  std::string version_folder(int64_t version) const;
  void retire_old_versions() const;

  PoolOptions options_;
  cluster::Communicator& world_;
  int64_t version_ = 0;
  std::vector<double> thresholds_;             // per class (index = label id)
  std::vector<bool> accepted_;                 // per class: passed the organ gate
  std::map<std::string, CaseLabels> cases_;    // by case file (this rank's shard)
};

std::string to_string(ThresholdMode mode);
// Thresholds of a pool version, per class (0 = background keeps `base`), from the all-reduced
// per-class counts of teacher-predicted pixels and of those at or above `base`.
std::vector<double> pool_thresholds(ThresholdMode mode, double base, const std::vector<double>& predicted,
                                    const std::vector<double>& confident);
ThresholdMode threshold_mode_from_string(const std::string& text);
// Share of each class among the labeled training cases' voxels (index = label id; all 0 when no
// case is labeled).
std::vector<double> labeled_class_shares(const datastore::DatasetManifest& manifest, int64_t classes);
// The organ gate: per class, whether `confident[c] / pixels` lies within [prior[c] / ratio,
// prior[c] * ratio]. Background, organs with prior 0, and every class when ratio <= 0 pass.
std::vector<bool> prior_gate(double ratio, const std::vector<double>& prior, const std::vector<double>& confident,
                             double pixels);

}  // namespace cmaf::core
