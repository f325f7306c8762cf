// Checkpoint folders on disk and their publication protocol.
//
//   RUN/checkpoints/step-00000100/            a published checkpoint
//       MANIFEST.json                          {"step", "files": {name: {"bytes", "fnv1a"}}, ...}
//       model.pt teacher.pt optimizer.pt state.json rank-00000.pt rank-00001.pt ...
//   RUN/checkpoints/.staging-step-00000100/    being written (never read as a checkpoint)
//
// Protocol: every rank writes its own part into the staging folder; after a barrier rank 0
// writes the shared part, fsyncs every file, writes MANIFEST.json with the size and FNV-1a
// checksum of each file, and renames the staging folder to its final name (then fsyncs the
// parent). A folder without a manifest, or whose files do not match it, is not a checkpoint:
// a kill at any moment leaves the previous checkpoints intact and the staging folder ignored.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cmaf::core {

inline constexpr const char* kCheckpointsFolder = "checkpoints";
inline constexpr const char* kCheckpointManifest = "MANIFEST.json";

std::string checkpoint_folder(const std::string& run_dir, int64_t step);
std::string staging_folder(const std::string& run_dir, int64_t step);
std::string rank_part_name(int rank);

// Rank 0, after every rank's part is in `staging`: checksums, manifest, rename. `extra` is
// stored in the manifest (world size, validation Dice...). Returns the final folder.
std::string publish_checkpoint(const std::string& run_dir, int64_t step, const nlohmann::json& extra);

struct CheckpointInfo {
  std::string path;
  int64_t step = 0;
  nlohmann::json manifest;
};

// Reads the manifest and verifies every file's size and checksum. Returns nullopt and sets
// `problem` (naming the file) when the folder is not a valid checkpoint.
std::optional<CheckpointInfo> verify_checkpoint(const std::string& path, std::string* problem);

// Published checkpoint folders of a run, oldest first (not verified).
std::vector<std::string> list_checkpoints(const std::string& run_dir);

// The newest checkpoint that verifies; every invalid newer one is appended to `skipped` as
// "path: problem".
std::optional<CheckpointInfo> latest_valid_checkpoint(const std::string& run_dir, std::vector<std::string>* skipped);

// Keeps the newest `keep` checkpoints and `best_step` (if >= 0); removes the others and any
// staging folder. Rank 0 only.
void prune_checkpoints(const std::string& run_dir, int64_t keep, int64_t best_step);

}  // namespace cmaf::core
