// Not a public header: the Trainer class behind train() (core/trainer.h), shared by its two
// halves: core/trainer.cpp (set-up: model, resume, data, pool; and the interval work: replica
// checks, validation, pool refresh, checkpoints) and core/training_loop.cpp (the step loop:
// forward, backward through the reducer, the optimizer, the logs).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cluster/communicator.h"
#include "cluster/gradient_reducer.h"
#include "core/batch_tensors.h"
#include "core/pseudo_label_pool.h"
#include "core/rank_pace.h"
#include "core/step_loss.h"
#include "core/trainer.h"
#include "core/training_checkpoint.h"
#include "core/training_data.h"
#include "core/training_log.h"
#include "core/training_state.h"
#include "core/validation.h"
#include "datastore/manifest.h"
#include "losses/boundary_contrastive.h"
#include "model/cmaformer.h"

namespace cmaf::core::detail {

using Clock = std::chrono::steady_clock;

class Trainer {
 public:
  Trainer(const TrainConfig& config, cluster::Communicator& world, const TrainDevice& device);
  TrainResult run();

 private:
  void set_up_model();
  void set_up_data();
  void refresh_pool(int64_t step);
  void resume_or_start();
  TrainingParts parts();
  std::string save_checkpoint();
  // One micro-batch of optimizer step `step`: forward, losses, backward through the reducer (it
  // communicates after the last micro-batch). Returns the per-step slots, loss terms / A.
  torch::Tensor train_step(const StepTensors& t, int64_t step, int64_t micro, StepLoss* loss_out);
  void update_teacher(int64_t step);
  void validate(int64_t step);
  void check_agreement(int64_t step);

  // The steps of run()'s loop, in order.
  struct StepOutcome {
    torch::Tensor sums;               // kSlotCount values, summed over the ranks
    std::vector<double> constraints;  // mean over the micro-batches
    std::vector<uint8_t> active;      // in any micro-batch
    int64_t images = 0;               // over all ranks
  };
  struct LogWindow {  // since the last step line
    Clock::time_point start = Clock::now();
    int64_t images = 0;
    int64_t steps = 0;
  };
  void maybe_refresh_pool(int64_t step);
  // The A micro-batches through train_step, then the buffers' broadcast (local batch norm) and
  // the loss terms' and flags' sum over the ranks.
  StepOutcome forward_backward(int64_t step);
  // Clipping, optimizer, teacher and multipliers; or, when a rank saw a non-finite value, a
  // skipped step (--non-finite skip) or an Error (stop).
  void apply_step(int64_t step, const StepOutcome& outcome);
  // The step line of metrics.jsonl (with the ranks' pace), then a new window.
  void log_window(int64_t step, double lr, const StepOutcome& outcome, LogWindow* window);
  // Fingerprints, validation and checkpoint at their intervals; true: stop (a signal asked).
  bool after_step(bool stop, TrainResult* result);

  TrainConfig config_;
  cluster::Communicator& world_;
  torch::Device device_;
  cluster::Communicator& device_world_;  // for tensors on device_ (world_ on the CPU)
  bool coordinator_;
  model::CmaformerConfig model_config_;
  datastore::DatasetManifest manifest_;
  int64_t classes_ = 0;
  model::Cmaformer student_{nullptr};
  model::Cmaformer teacher_{nullptr};
  losses::ProjectionHead head_{nullptr};
  std::vector<cluster::NamedTensor> parameters_;
  // The trained modules' buffers (batch-norm statistics). With --sync-batch-norm they update the
  // same on every rank; without it, from each rank's own batches, so rank 0's are broadcast every
  // step (PyTorch DDP's broadcast_buffers): the teacher, validation and checkpoints see one set.
  std::vector<cluster::NamedTensor> buffers_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<cluster::BucketedReducer> reducer_;
  TrainingState state_;
  int64_t resumed_from_ = -1;
  // Data.
  std::unique_ptr<TrainingData> data_;
  std::unique_ptr<Validator> validator_;
  std::unique_ptr<PseudoLabelPool> pool_;
  int64_t last_pool_refresh_ = -1;
  TrainingLog log_;
  std::unique_ptr<PaceMeter> pace_;  // several ranks: who sets the pace (core/rank_pace.h)
  double last_val_mean_ = -1.0;
};

}  // namespace cmaf::core::detail
