#include "core/training_checkpoint.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/test_delay.h"
#include "core/model_weights.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStateFile = "state.json";

void save_module(const torch::nn::Module& module, const std::string& path) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  archive.save_to(path);
}

void load_module(torch::nn::Module& module, const std::string& path) {
  torch::serialize::InputArchive archive;
  archive.load_from(path, model::module_device(module));
  module.load(archive);
}

}  // namespace

std::string save_training_checkpoint(const TrainingParts& parts, const TrainConfig& config,
                                     const nlohmann::json& described, const nlohmann::json& manifest,
                                     cluster::Communicator& world) {
  const int64_t step = parts.state.step;
  const fs::path staging = staging_folder(config.run_dir, step);
  if (world.rank() == 0) {
    fs::remove_all(staging);
    fs::create_directories(staging);
  }
  world.barrier();
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    torch::Tensor rng;
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      rng = generator.get_state();
    }
    torch::save(rng, (staging / rank_part_name(world.rank())).string());
  }
  world.barrier();
  std::string published;
  if (world.rank() == 0) {
    // The others wait in the barrier below: on a slow file system that is not a stall.
    world.begin_local_work(str("writing checkpoint step ", step));
    save_weights(parts.student, (staging / "model.pt").string());
    test_delay("CMAF_CHECKPOINT_SAVE_DELAY_MS");  // the tests' fault injection: a half-written save
    save_weights(parts.teacher, (staging / "teacher.pt").string());
    if (parts.head != nullptr) save_module(*parts.head, (staging / "projection_head.pt").string());
    torch::save(parts.optimizer, (staging / "optimizer.pt").string());
    nlohmann::json saved = described;
    saved["state"] = parts.state.to_json();
    saved["config"] = config.to_json();
    saved["world_size"] = world.size();
    write_file_atomically((staging / kStateFile).string(), saved.dump(2) + "\n");
    published = publish_checkpoint(config.run_dir, step, manifest);
    prune_checkpoints(config.run_dir, config.keep_checkpoints, parts.state.best_step);
    LOG(INFO) << "checkpoint " << published;
  }
  world.barrier();
  return published.empty() ? checkpoint_folder(config.run_dir, step) : published;
}

std::optional<CheckpointInfo> agree_on_resume_checkpoint(const std::string& resume, const std::string& run_dir,
                                                         cluster::Communicator& world) {
  int64_t chosen = -1;
  if (world.rank() == 0 && resume != "none") {
    std::vector<std::string> skipped;
    std::optional<CheckpointInfo> info;
    if (resume == "auto") {
      info = latest_valid_checkpoint(run_dir, &skipped);
    } else {
      std::string problem;
      info = verify_checkpoint(resume, &problem);
      if (!info) throw InputError(resume, kCheckpointManifest, str("not a valid checkpoint: ", problem));
    }
    for (const std::string& s : skipped) LOG(WARNING) << "skipping invalid checkpoint " << s;
    if (info) chosen = info->step;
  }
  if (world.rank() == 0 && resume == "none" && !list_checkpoints(run_dir).empty()) {
    throw InputError(run_dir, kCheckpointsFolder,
                     "holds checkpoints of an earlier run and --resume is none: use --resume auto to continue it, "
                     "or another --run-dir for a new run");
  }
  at::Tensor decision = torch::tensor({chosen}, torch::kLong);
  world.broadcast(decision, 0);
  chosen = decision.item<int64_t>();
  if (chosen < 0) return std::nullopt;
  const std::string path = resume == "auto" || resume == "none" ? checkpoint_folder(run_dir, chosen) : resume;
  std::string problem;
  auto info = verify_checkpoint(path, &problem);
  if (!info) throw IoError(str("rank ", world.rank(), " cannot read the checkpoint rank 0 chose: ", problem));
  return info;
}

void load_training_checkpoint(const TrainingParts& parts, const CheckpointInfo& info, const TrainConfig& config,
                              int64_t classes, cluster::Communicator& world) {
  const fs::path dir(info.path);
  const std::string state_path = (dir / kStateFile).string();
  const nlohmann::json saved = nlohmann::json::parse(std::ifstream(state_path));
  const TrainConfig saved_config = TrainConfig::from_json(saved.at("config"), state_path);
  if (saved_config.optimizer != config.optimizer) {
    throw InputError(state_path, "config.optimizer",
                     str("checkpoint trained with ", to_string(saved_config.optimizer), ", this run asks for ",
                         to_string(config.optimizer), " (--optimizer)"));
  }
  if ((saved_config.contrastive_weight > 0.0) != (parts.head != nullptr)) {
    throw InputError(state_path, "config.contrastive-weight",
                     "the checkpoint and this run disagree on whether the contrastive projection head exists");
  }
  load_weights(parts.student, (dir / "model.pt").string());
  load_weights(parts.teacher, (dir / "teacher.pt").string());
  if (parts.head != nullptr) load_module(*parts.head, (dir / "projection_head.pt").string());
  torch::load(parts.optimizer, (dir / "optimizer.pt").string(), model::module_device(parts.student));
  parts.state = TrainingState::from_json(saved.at("state"), state_path);
  if (parts.state.multipliers.values().size() != static_cast<size_t>(classes - 1)) {
    throw InputError(state_path, "state.multipliers",
                     str(parts.state.multipliers.values().size(), " multipliers, the dataset has ", classes - 1,
                         " foreground classes"));
  }
  const int saved_world = saved.at("world_size").get<int>();
  const fs::path rank_part = dir / rank_part_name(world.rank());
  if (saved_world == world.size() && fs::exists(rank_part)) {
    torch::Tensor rng;
    torch::load(rng, rank_part.string());
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng);
  } else if (world.rank() == 0) {
    LOG(WARNING) << "resuming a " << saved_world << "-rank checkpoint on " << world.size()
                 << " ranks: shards re-planned, per-rank random streams restart from the seed";
  }
  if (world.rank() == 0) LOG(INFO) << "resuming from " << info.path << " (step " << parts.state.step << ")";
}

}  // namespace cmaf::core
