// Every option of `cmaformer train`, with its default and its command-line / INI name (the
// same word: `--labeled-batch 4` or `labeled-batch = 4`). The resolved configuration is written
// into the run folder as `config.json` and stored in every checkpoint.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>

#include "datastore/slice_augment.h"
#include "model/model_config.h"

namespace cmaf::core {

inline constexpr int kRequeueExitCode = 85;  // stopped by a signal after a checkpoint: requeue me

enum class OptimizerKind { kAdamW, kSgdNesterov };
enum class ScheduleKind { kPoly, kCosine };
enum class NonFinitePolicy { kSkip, kStop };

struct TrainConfig {
  // Data and run.
  std::string data;     // --data
  std::string run_dir;  // --run-dir
  std::string preset = "quarter";
  int64_t input_size = 0;  // 0: the preset's
  int64_t steps = 1000;
  int64_t labeled_batch = 4;
  int64_t unlabeled_batch = 4;
  uint64_t seed = 0;
  int threads = 0;  // LibTorch threads per rank; 0: allowed CPUs / local ranks sharing them
  // Checkpoints and resume.
  int64_t checkpoint_every = 500;
  int64_t keep_checkpoints = 2;
  std::string resume = "auto";  // auto | none | PATH of a checkpoint folder
  // Pseudo-label targets: with --pool-refresh-every R > 0 the pool (core/pseudo_label_pool.h) is
  // refreshed by the EMA teacher at the start and every R steps and supplies the targets; with 0
  // the EMA teacher labels the weak view at every step.
  int64_t pool_refresh_every = 0;
  double confidence_threshold = 0.8;  // below it a target pixel is ignored by LDC and contrastive
  std::string pool_thresholds = "fixed";  // fixed | adaptive (per-class, from acceptance)
  double pool_prior_ratio = 0.0;  // > 0: organ gate of the pool against the labeled cases' shares
  bool pool_recalibrate_bn = true;  // teacher's batch-norm statistics re-estimated before each refresh
  // Optimisation.
  OptimizerKind optimizer = OptimizerKind::kAdamW;
  double lr = 1e-3;
  double weight_decay = 3e-5;
  double momentum = 0.9;  // SGD
  ScheduleKind schedule = ScheduleKind::kPoly;
  int64_t warmup_steps = 0;
  double poly_power = 0.9;
  double clip_grad_norm = 0.0;  // 0: off
  int64_t accumulate_steps = 1;  // micro-batches per optimizer step
  bool bf16 = false;
  // Convolution weights and input batches in NHWC (channels-last), oneDNN's native layout: on
  // this CPU 1.05x (quarter, 128 px) to 1.36x (paper, 512 px) faster fp32 steps and 1.3-1.4x
  // faster bf16 steps (BENCHMARKS.md). Same results up to rounding. Default on; false keeps NCHW.
  bool channels_last = true;
  // cpu, or cuda: one GPU per rank (device = node-local rank modulo the visible devices),
  // gradients and batch statistics all-reduced by NCCL (a build with -DCMAF_WITH_CUDA=ON).
  std::string device = "cpu";
  NonFinitePolicy non_finite = NonFinitePolicy::kStop;
  // Semi-supervised method.
  double ema_decay = 0.99;
  int64_t ramp_up_steps = 200;
  // Steps trained on the labeled slices alone before the unlabeled stream, its losses and the
  // pool start; the ramp-up and the pool refreshes count from there. A teacher that has not yet
  // learned an organ labels it background with confidence, and the pool feeds that back.
  int64_t unlabeled_start_step = 0;
  bool use_ldc = true;
  double ldc_fixed_weight = 0.0;  // > 0: fixed weight instead of multipliers (ablation)
  double dual_step = 0.1;
  double constraint_tolerance = 0.1;
  double multiplier_max = 10.0;
  double contrastive_weight = 0.1;  // 0: off
  // The strongly augmented unlabeled views in a forward pass of their own: batch norm then
  // normalises them with their own batch statistics, and they leave the running statistics
  // (used at evaluation and by the teacher on clean slices) to the labeled slices. false: one
  // forward over labeled + strong slices together.
  bool separate_strong_forward = false;
  double foreground_fraction = 0.5;
  // Multi-institution pooling: "siteA:3,siteB:1" multiplies the sampling weight of each site's
  // cases (default 1), so a small hospital is not drowned by a large one.
  std::string site_weights;
  bool sync_batch_norm = true;
  // Gradient all-reduce: bucket cap, the first bucket's cap (1 MiB, as in PyTorch DDP: the last
  // layers' gradients start on the wire early) and bf16 on the wire (half the bytes; each rank's
  // share rounded to bf16, summed in bf16).
  int64_t bucket_cap_mib = 25;
  double first_bucket_mib = 1.0;
  bool bf16_allreduce = false;
  // Loader.
  int loader_threads = 1;
  int64_t loader_queue = 4;
  int64_t cache_budget_mib = 2048;
  datastore::AugmentOptions augment;
  // Validation and logging.
  int64_t val_every = 0;  // 0: at checkpoints and at the end
  int64_t val_max_slices = 0;  // 0: every val slice
  int64_t log_every = 10;
  int64_t fingerprint_every = 50;
  double stall_seconds = 300;

  model::CmaformerConfig model() const;
  // Throws InputError naming the option for anything out of range.
  void validate() const;
  // site_weights parsed; throws InputError naming --site-weights for malformed text.
  std::map<std::string, double> parsed_site_weights() const;
  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& json, const std::string& origin);
};

std::string to_string(OptimizerKind kind);
std::string to_string(ScheduleKind kind);
std::string to_string(NonFinitePolicy policy);
OptimizerKind optimizer_from_string(const std::string& text);
ScheduleKind schedule_from_string(const std::string& text);
NonFinitePolicy non_finite_from_string(const std::string& text);

}  // namespace cmaf::core
