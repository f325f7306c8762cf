#include "core/inference.h"

#include <glog/logging.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/error.h"
#include "core/checkpoint_store.h"
#include "core/largest_component.h"
#include "core/model_weights.h"
#include "core/slice_predictor.h"
#include "datastore/intensity.h"
#include "datastore/nifti_volume.h"
#include "model/cmaformer.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;

// The recorded intensity normalisation of `site` (or of the only / all-identical sites).
datastore::IntensityNormalization recorded_normalization(const std::string& checkpoint, const std::string& site) {
  const fs::path state_path = fs::path(checkpoint) / "state.json";
  const nlohmann::json state = nlohmann::json::parse(std::ifstream(state_path));
  if (!state.contains("dataset")) {
    throw InputError(state_path.string(), "dataset",
                     "missing: this checkpoint does not record its data's preprocessing (written by an older version)");
  }
  const nlohmann::json& sites = state["dataset"]["site_preprocessing"];
  const nlohmann::json* chosen = nullptr;
  if (!site.empty()) {
    if (!sites.contains(site)) throw InputError(state_path.string(), "dataset.site_preprocessing", str("no site '", site, "'"));
    chosen = &sites[site];
  } else {
    for (const auto& [name, preprocessing] : sites.items()) {
      if (chosen != nullptr && chosen->value("intensity", nlohmann::json()) != preprocessing.value("intensity", nlohmann::json())) {
        throw InputError(state_path.string(), "dataset.site_preprocessing",
                         "sites were preprocessed differently: choose one with --site");
      }
      chosen = &preprocessing;
    }
  }
  if (chosen == nullptr || !chosen->contains("intensity")) {
    throw InputError(state_path.string(), "dataset.site_preprocessing", "records no intensity normalisation");
  }
  return datastore::IntensityNormalization::from_json((*chosen)["intensity"], state_path.string());
}

bool is_nifti(const fs::path& p) {
  const std::string name = p.filename().string();
  return (name.size() > 7 && name.compare(name.size() - 7, 7, ".nii.gz") == 0) ||
         (name.size() > 4 && name.compare(name.size() - 4, 4, ".nii") == 0);
}

// nnU-Net names scans <case>_0000.nii.gz and labels <case>.nii.gz: drop the channel suffix.
std::string label_name(const fs::path& scan) {
  std::string name = scan.filename().string();
  const std::string gz = ".nii.gz";
  std::string ext = name.size() > gz.size() && name.compare(name.size() - gz.size(), gz.size(), gz) == 0 ? gz : ".nii";
  std::string stem = name.substr(0, name.size() - ext.size());
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, "_0000") == 0) stem.resize(stem.size() - 5);
  return stem + ext;
}

}  // namespace

int64_t run_inference(const InferOptions& o) {
  if (!fs::is_directory(o.checkpoint)) {
    throw InputError(o.checkpoint, "", "expected a checkpoint folder (RUN/checkpoints/step-N)");
  }
  std::string problem;
  if (!verify_checkpoint(o.checkpoint, &problem)) throw InputError(o.checkpoint, kCheckpointManifest, problem);
  const std::string weights = (fs::path(o.checkpoint) / "model.pt").string();
  const datastore::IntensityNormalization normalization = recorded_normalization(o.checkpoint, o.site);
  model::Cmaformer model(read_weights_config(weights));
  load_weights(*model, weights);
  std::vector<std::pair<fs::path, fs::path>> jobs;
  if (fs::is_directory(o.input)) {
    for (const auto& entry : fs::directory_iterator(o.input)) {
      if (entry.is_regular_file() && is_nifti(entry.path())) {
        jobs.emplace_back(entry.path(), fs::path(o.output) / label_name(entry.path()));
      }
    }
    if (jobs.empty()) throw InputError(o.input, "", "holds no .nii or .nii.gz scan");
    std::sort(jobs.begin(), jobs.end());
    fs::create_directories(o.output);
  } else {
    if (!fs::is_regular_file(o.input) || !is_nifti(o.input)) throw InputError(o.input, "", "expected a NIfTI scan or a folder of them");
    if (!is_nifti(o.output)) throw InputError(o.output, "", "expected an output path ending in .nii or .nii.gz");
    jobs.emplace_back(o.input, o.output);
  }
  for (const auto& [scan, out] : jobs) {
    const auto start = std::chrono::steady_clock::now();
    datastore::Volume<float> volume = datastore::read_nifti_image(scan.string());
    datastore::normalize_intensities(volume.voxels, normalization, scan.string());
    std::vector<uint8_t> labels = predict_volume(*model, volume.voxels, volume.geometry.shape, o.batch, o.flip_tta);
    if (o.largest_component) keep_largest_component(labels, volume.geometry.shape);
    datastore::write_nifti(out.string(), volume.geometry, labels.data());
    LOG(INFO) << scan.string() << " (" << volume.geometry.shape_string() << ", " << normalization.describe() << ") -> "
              << out.string() << " in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
              << " s";
  }
  return static_cast<int64_t>(jobs.size());
}

}  // namespace cmaf::core
