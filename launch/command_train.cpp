#include <glog/logging.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include <torch/cuda.h>

#include "cluster/device_communicator.h"
#include "cluster/process_runtime.h"
#include "common/error.h"
#include "core/rank_agreement.h"
#include "core/train_config.h"
#include "core/trainer.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/rank_errors.h"

namespace cmaf::launch {
namespace {

// Per-rank log files under RUN/logs; rank 0 also logs to stderr.
void log_to_run_folder(const std::string& run_dir, int rank) {
  const std::filesystem::path logs = std::filesystem::path(run_dir) / "logs";
  std::filesystem::create_directories(logs);
  const std::string prefix = (logs / str("rank-", rank, ".log.")).string();
  google::SetLogDestination(google::GLOG_INFO, prefix.c_str());
  FLAGS_logtostderr = false;
  FLAGS_alsologtostderr = rank == 0;
  FLAGS_stderrthreshold = rank == 0 ? google::GLOG_INFO : google::GLOG_ERROR;
}

// --device cuda: this rank's GPU (node-local rank modulo the GPUs it can see, so both one GPU
// per task and all of a node's GPUs per task work) and its NCCL communicator.
core::TrainDevice cuda_device(const cluster::ProcessRuntime& runtime, cluster::Communicator& world,
                              std::chrono::milliseconds stall_limit,
                              std::unique_ptr<cluster::Communicator>& communicator) {
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  if (!torch::cuda::is_available()) {
    throw InputError("--device", "cuda",
                     str("no CUDA device usable by rank ", runtime.rank(), " (node-local rank ", runtime.local_rank(),
                         " of ", runtime.local_size(), ", which chooses the GPU) on ", runtime.hostname(),
                         " (CUDA_VISIBLE_DEVICES=", visible != nullptr ? visible : "unset",
                         "; a CPU-only LibTorch never sees one): use --device cpu or a GPU node and a CUDA build"));
  }
  const int index = runtime.local_rank() % static_cast<int>(torch::cuda::device_count());
  communicator = cluster::make_cuda_communicator(world, index, stall_limit);
  LOG(INFO) << "rank " << runtime.rank() << " trains on cuda:" << index << " of " << torch::cuda::device_count()
            << " visible (CUDA_VISIBLE_DEVICES=" << (visible != nullptr ? visible : "unset") << ")";
  return {c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index)), communicator.get()};
}

// The choices that are text on the command line and enums in TrainConfig.
struct TrainChoices {
  std::string optimizer, schedule, non_finite;
};

// Every option of `cmaformer train`, each bound to its field of `c` (or of `choices`).
void add_train_options(po::options_description& options, core::TrainConfig& c, TrainChoices& choices) {
  options.add_options()
      ("data", po::value(&c.data), "dataset folder (cmaformer prep or synth output)")
      ("run-dir", po::value(&c.run_dir), "run folder: config, metrics, checkpoints, logs")
      ("preset", po::value(&c.preset)->default_value(c.preset), "model preset: paper, half, quarter, tiny")
      ("input-size", po::value(&c.input_size)->default_value(c.input_size), "network input size, 0 = the preset's")
      ("steps", po::value(&c.steps)->default_value(c.steps), "total optimizer steps")
      ("labeled-batch", po::value(&c.labeled_batch)->default_value(c.labeled_batch), "labeled slices per rank and step")
      ("unlabeled-batch", po::value(&c.unlabeled_batch)->default_value(c.unlabeled_batch), "unlabeled slices per rank and step")
      ("seed", po::value(&c.seed)->default_value(c.seed), "seed of weights, sampling and augmentation")
      ("threads", po::value(&c.threads)->default_value(c.threads), "LibTorch threads per rank, 0 = allowed CPUs / local ranks sharing them")
      ("checkpoint-every", po::value(&c.checkpoint_every)->default_value(c.checkpoint_every), "steps between checkpoints")
      ("keep-checkpoints", po::value(&c.keep_checkpoints)->default_value(c.keep_checkpoints), "newest checkpoints kept (plus the best)")
      ("pool-refresh-every", po::value(&c.pool_refresh_every)->default_value(c.pool_refresh_every), "steps between pseudo-label pool refreshes, 0 = teacher targets every step")
      ("pool-thresholds", po::value(&c.pool_thresholds)->default_value(c.pool_thresholds), "pool confidence thresholds: fixed or adaptive per class")
      ("pool-recalibrate-bn", po::value(&c.pool_recalibrate_bn)->default_value(c.pool_recalibrate_bn), "re-estimate the teacher's batch-norm statistics on the slices it labels before each pool refresh")
      ("pool-prior-ratio", po::value(&c.pool_prior_ratio)->default_value(c.pool_prior_ratio), "pool organ gate: an organ enters a pool version only when its share of confident pixels is within this factor of its share in the labeled cases, 0 = off")
      ("resume", po::value(&c.resume)->default_value(c.resume), "auto (latest valid checkpoint), none, or a checkpoint folder")
      ("confidence-threshold", po::value(&c.confidence_threshold)->default_value(c.confidence_threshold), "teacher confidence below which a pixel is ignored")
      ("optimizer", po::value(&choices.optimizer)->default_value(choices.optimizer), "adamw or sgd (Nesterov)")
      ("lr", po::value(&c.lr)->default_value(c.lr), "peak learning rate")
      ("weight-decay", po::value(&c.weight_decay)->default_value(c.weight_decay), "weight decay")
      ("momentum", po::value(&c.momentum)->default_value(c.momentum), "SGD momentum")
      ("schedule", po::value(&choices.schedule)->default_value(choices.schedule), "poly or cosine, after the warm-up")
      ("warmup-steps", po::value(&c.warmup_steps)->default_value(c.warmup_steps), "linear warm-up steps")
      ("poly-power", po::value(&c.poly_power)->default_value(c.poly_power), "poly schedule power")
      ("clip-grad-norm", po::value(&c.clip_grad_norm)->default_value(c.clip_grad_norm), "gradient norm clip, 0 = off")
      ("accumulate-steps", po::value(&c.accumulate_steps)->default_value(c.accumulate_steps), "micro-batches per optimizer step (gradient accumulation)")
      ("bf16", po::value(&c.bf16)->default_value(c.bf16), "CPU bf16 autocast")
      ("channels-last", po::value(&c.channels_last)->default_value(c.channels_last), "NHWC weights and batches (faster convolutions)")
      ("device", po::value(&c.device)->default_value(c.device), "cpu, or cuda: one GPU per rank (node-local rank modulo visible GPUs), NCCL; needs a -DCMAF_WITH_CUDA=ON build")
      ("non-finite", po::value(&choices.non_finite)->default_value(choices.non_finite), "non-finite loss or gradients: stop or skip")
      ("ema-decay", po::value(&c.ema_decay)->default_value(c.ema_decay), "EMA teacher decay")
      ("ramp-up-steps", po::value(&c.ramp_up_steps)->default_value(c.ramp_up_steps), "sigmoid ramp-up of the unlabeled terms")
      ("unlabeled-start-step", po::value(&c.unlabeled_start_step)->default_value(c.unlabeled_start_step), "steps on the labeled slices alone before the unlabeled stream, its losses and the pool start (the ramp-up and pool refreshes count from it)")
      ("ldc", po::value(&c.use_ldc)->default_value(c.use_ldc), "LDC constraints on unlabeled slices")
      ("ldc-fixed-weight", po::value(&c.ldc_fixed_weight)->default_value(c.ldc_fixed_weight), "> 0: fixed weight instead of multipliers")
      ("dual-step", po::value(&c.dual_step)->default_value(c.dual_step), "multiplier step eta")
      ("constraint-tolerance", po::value(&c.constraint_tolerance)->default_value(c.constraint_tolerance), "eps_c of every constraint")
      ("multiplier-max", po::value(&c.multiplier_max)->default_value(c.multiplier_max), "upper clip of the multipliers")
      ("contrastive-weight", po::value(&c.contrastive_weight)->default_value(c.contrastive_weight), "boundary contrastive weight, 0 = off")
      ("separate-strong-forward", po::value(&c.separate_strong_forward)->default_value(c.separate_strong_forward), "strong unlabeled views in their own forward: own batch statistics, running statistics from labeled slices only")
      ("foreground-fraction", po::value(&c.foreground_fraction)->default_value(c.foreground_fraction), "labeled slices forced to hold an organ")
      ("site-weights", po::value(&c.site_weights), "per-site sampling weights, e.g. hospitalA:3,hospitalB:1 (default 1)")
      ("sync-batch-norm", po::value(&c.sync_batch_norm)->default_value(c.sync_batch_norm), "batch statistics over all ranks")
      ("bucket-cap-mib", po::value(&c.bucket_cap_mib)->default_value(c.bucket_cap_mib), "gradient all-reduce bucket size after the first bucket")
      ("first-bucket-mib", po::value(&c.first_bucket_mib)->default_value(c.first_bucket_mib), "size cap of the first gradient bucket (the last layers' gradients), MiB")
      ("bf16-allreduce", po::value(&c.bf16_allreduce)->default_value(c.bf16_allreduce), "send gradients as bf16 (half the bytes, rounded to bf16)")
      ("loader-threads", po::value(&c.loader_threads)->default_value(c.loader_threads), "reader threads per rank")
      ("loader-queue", po::value(&c.loader_queue)->default_value(c.loader_queue), "batches prepared ahead")
      ("cache-budget-mib", po::value(&c.cache_budget_mib)->default_value(c.cache_budget_mib), "cache the shard in memory below this size")
      ("augment", po::value(&c.augment.enabled)->default_value(c.augment.enabled), "random geometry and intensity")
      ("flip-probability", po::value(&c.augment.flip_probability)->default_value(c.augment.flip_probability), "mirror each in-plane axis with this probability")
      ("rot90-probability", po::value(&c.augment.rot90_probability)->default_value(c.augment.rot90_probability), "a quarter turn (1-3, uniform) with this probability")
      ("rotation-probability", po::value(&c.augment.rotation_probability)->default_value(c.augment.rotation_probability), "a free rotation with this probability")
      ("max-rotation-degrees", po::value(&c.augment.max_rotation_degrees)->default_value(c.augment.max_rotation_degrees), "free rotation angle bound, degrees")
      ("scale-probability", po::value(&c.augment.scale_probability)->default_value(c.augment.scale_probability), "a zoom with this probability")
      ("min-scale", po::value(&c.augment.min_scale)->default_value(c.augment.min_scale), "smallest zoom (> 1 zooms in)")
      ("max-scale", po::value(&c.augment.max_scale)->default_value(c.augment.max_scale), "largest zoom")
      ("intensity-probability", po::value(&c.augment.intensity_probability)->default_value(c.augment.intensity_probability), "each intensity jitter on labeled slices")
      ("strong-intensity-probability", po::value(&c.augment.strong_intensity_probability)->default_value(c.augment.strong_intensity_probability), "each intensity jitter on the student's unlabeled view")
      ("max-brightness", po::value(&c.augment.max_brightness)->default_value(c.augment.max_brightness), "additive brightness bound (preprocessed units)")
      ("max-contrast", po::value(&c.augment.max_contrast)->default_value(c.augment.max_contrast), "contrast factor 1 +- this, < 1")
      ("min-gamma", po::value(&c.augment.min_gamma)->default_value(c.augment.min_gamma), "smallest gamma")
      ("max-gamma", po::value(&c.augment.max_gamma)->default_value(c.augment.max_gamma), "largest gamma")
      ("max-noise-std", po::value(&c.augment.max_noise_std)->default_value(c.augment.max_noise_std), "Gaussian noise std bound")
      ("val-every", po::value(&c.val_every)->default_value(c.val_every), "steps between validations, 0 = at checkpoints")
      ("val-max-slices", po::value(&c.val_max_slices)->default_value(c.val_max_slices), "val slices used, 0 = all")
      ("log-every", po::value(&c.log_every)->default_value(c.log_every), "steps between metrics.jsonl lines and progress updates (into a file or under mpirun: a progress line at most every 30 s)")
      ("fingerprint-every", po::value(&c.fingerprint_every)->default_value(c.fingerprint_every), "steps between replica checks")
      ("stall-seconds", po::value(&c.stall_seconds)->default_value(c.stall_seconds), "a collective, or MPI's start-up or shut-down (those at least 60 s), waiting longer aborts the job (status 75); for a rank busy with work of its own (checkpoint writing, validation, pool refresh) the others wait up to 10 times this");
}

}  // namespace

int run_train(int argc, char** argv) {
  const CommandLine info{
      "train",
      "cmaformer train --data DIR --run-dir DIR [--preset NAME --steps N --labeled-batch B --unlabeled-batch B\n"
      "       --checkpoint-every N --keep-checkpoints K --pool-refresh-every N --resume auto|none|PATH --seed S\n"
      "       --threads T --config FILE ...]   (alone, or under mpirun / srun --mpi=pmix)",
      "Semi-supervised data-parallel training of CMAformer: supervised loss on labeled slices, LDC\n"
      "(Lagrange multipliers per organ) and boundary-aware contrastive loss on unlabeled slices with\n"
      "an EMA teacher. Writes RUN/config.json, RUN/metrics.jsonl, RUN/checkpoints/step-N, RUN/logs.\n"
      "SIGUSR1 or SIGTERM: every rank checkpoints at the same step and exits with status 85 (requeue).\n"
      "Every option is also an INI key of --config (top level or a [train] section)."};
  core::TrainConfig c;
  TrainChoices choices{core::to_string(c.optimizer), core::to_string(c.schedule), core::to_string(c.non_finite)};
  po::options_description options("train options");
  add_train_options(options, c, choices);
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, {}, values)) return 0;
  require(values, "data", info);
  require(values, "run-dir", info);
  c.optimizer = core::optimizer_from_string(choices.optimizer);
  c.schedule = core::schedule_from_string(choices.schedule);
  c.non_finite = core::non_finite_from_string(choices.non_finite);
  c.validate();
  cluster::RuntimeOptions runtime_options;
  runtime_options.threads = c.threads;
  const std::chrono::milliseconds stall_limit(static_cast<int64_t>(c.stall_seconds * 1000.0));
  // MPI start-up of a large job can take a minute: a short limit meant for collectives does
  // not cut it shorter than that.
  runtime_options.stall_limit = std::max<std::chrono::milliseconds>(stall_limit, std::chrono::minutes(1));
  auto runtime = cluster::ProcessRuntime::start(&argc, &argv, runtime_options);
  // Outside the work, so that an error on this rank alone is printed before they shut down.
  std::unique_ptr<cluster::Communicator> world;
  std::unique_ptr<cluster::Communicator> device_communicator;
  return run_on_this_rank([&] {
    log_to_run_folder(c.run_dir, runtime->rank());
    LOG(INFO) << runtime->describe();
    world = runtime->world_communicator(stall_limit);
    // Before the GPU set-up, whose collectives a rank started with another --device would not make.
    core::check_options_agree(c, *world);
    const core::TrainDevice device =
        c.device == "cuda" ? cuda_device(*runtime, *world, stall_limit, device_communicator) : core::TrainDevice{};
    const core::TrainResult result = core::train(c, *world, device);
    if (runtime->rank() == 0) {
      const std::string resumed =
          result.resumed_from >= 0 ? str(" (resumed from step ", result.resumed_from, ")") : std::string();
      std::cout << (result.stopped_by_signal ? "stopped (signal) at step " : "finished at step ")
                << result.final_step << resumed << "; checkpoint " << result.last_checkpoint << "\n";
    }
    return result.stopped_by_signal ? core::kRequeueExitCode : 0;
  });
}

}  // namespace cmaf::launch
