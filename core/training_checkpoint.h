// What a training checkpoint holds and how the trainer writes and restores it (the folder
// protocol itself is core/checkpoint_store.h):
//   model.pt, teacher.pt          student and EMA teacher weights (core/model_weights.h)
//   projection_head.pt            the contrastive projection head, when the term is on
//   optimizer.pt                  optimizer state (LibTorch archive)
//   state.json                    TrainingState, the resolved TrainConfig, world size, model
//                                 configuration, the dataset's classes and preprocessing
//   rank-NNNNN.pt                 each rank's LibTorch CPU generator state
#pragma once

#include <torch/optim/optimizer.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "cluster/communicator.h"
#include "core/checkpoint_store.h"
#include "core/train_config.h"
#include "core/training_state.h"
#include "losses/boundary_contrastive.h"
#include "model/cmaformer.h"

namespace cmaf::core {

struct TrainingParts {
  model::CmaformerImpl& student;
  model::CmaformerImpl& teacher;
  losses::ProjectionHeadImpl* head;  // null without the contrastive term
  torch::optim::Optimizer& optimizer;
  TrainingState& state;
};

// Collective: every rank writes its RNG part, rank 0 the shared part, then publishes and prunes.
// `described` goes into state.json beside the state (model configuration, dataset); `manifest`
// into MANIFEST.json. Returns the published folder.
std::string save_training_checkpoint(const TrainingParts& parts, const TrainConfig& config,
                                     const nlohmann::json& described, const nlohmann::json& manifest,
                                     cluster::Communicator& world);

// Collective: the checkpoint `--resume` (auto, none or a folder) names, as rank 0 sees it (ranks
// may not see the same files at the same moment on a network file system), verified on every
// rank; nullopt for a fresh start. auto skips invalid checkpoints with a warning; none refuses a
// run folder that already holds checkpoints; an invalid folder is an InputError.
std::optional<CheckpointInfo> agree_on_resume_checkpoint(const std::string& resume, const std::string& run_dir,
                                                         cluster::Communicator& world);

// Restores every part from `info` (the same folder on every rank). Throws InputError naming
// state.json when the checkpoint's optimizer, projection head or class count do not match.
// The per-rank RNG is restored only at the same world size (otherwise a warning on rank 0).
void load_training_checkpoint(const TrainingParts& parts, const CheckpointInfo& info, const TrainConfig& config,
                              int64_t classes, cluster::Communicator& world);

}  // namespace cmaf::core
