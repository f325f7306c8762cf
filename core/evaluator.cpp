#include "core/evaluator.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>

#include "common/error.h"
#include "common/test_delay.h"
#include "core/batch_norm_calibration.h"
#include "core/checkpoint_store.h"
#include "core/model_weights.h"
#include "core/segmentation_metrics.h"
#include "core/largest_component.h"
#include "core/slice_predictor.h"
#include "datastore/case_file.h"
#include "datastore/manifest.h"
#include "datastore/nifti_volume.h"
#include "model/cmaformer.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;

std::string weights_path(const std::string& checkpoint) {
  if (fs::is_directory(checkpoint)) {
    std::string problem;
    if (!verify_checkpoint(checkpoint, &problem)) throw InputError(checkpoint, kCheckpointManifest, problem);
    return (fs::path(checkpoint) / "model.pt").string();
  }
  if (!fs::is_regular_file(checkpoint)) throw InputError(checkpoint, "", "no such checkpoint folder or weights file");
  return checkpoint;
}

nlohmann::json to_json(const ClassMetrics& m) {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  return {m.label,       m.prediction_voxels, m.truth_voxels,       opt(m.dice),      opt(m.hd95_mm),
          opt(m.assd_mm), m.prediction_ml,    m.truth_ml,           opt(m.volume_difference), m.paper_dice,
          m.paper_hd95_voxels};
}

ClassMetrics from_json(const nlohmann::json& j) {
  auto opt = [](const nlohmann::json& v) { return v.is_null() ? std::optional<double>() : v.get<double>(); };
  ClassMetrics m;
  m.label = j[0];
  m.prediction_voxels = j[1];
  m.truth_voxels = j[2];
  m.dice = opt(j[3]);
  m.hd95_mm = opt(j[4]);
  m.assd_mm = opt(j[5]);
  m.prediction_ml = j[6];
  m.truth_ml = j[7];
  m.volume_difference = opt(j[8]);
  m.paper_dice = j[9];
  m.paper_hd95_voxels = j[10];
  return m;
}

// Every rank's results on every rank: JSON text packed 8 bytes per int64 (a type every
// backend reduces and gathers), padded to the longest.
std::vector<CaseResult> gather(const std::vector<CaseResult>& mine, cluster::Communicator& world) {
  nlohmann::json j = nlohmann::json::array();
  for (const CaseResult& c : mine) {
    nlohmann::json classes = nlohmann::json::array();
    for (const ClassMetrics& m : c.classes) classes.push_back(to_json(m));
    j.push_back({{"case", c.case_id}, {"site", c.site}, {"classes", classes}});
  }
  const std::string text = j.dump();
  const torch::Tensor lengths = world.all_gather(torch::tensor({static_cast<int64_t>(text.size())}, torch::kLong));
  const int64_t words = (lengths.max().item<int64_t>() + 7) / 8;
  torch::Tensor packed = torch::zeros({std::max<int64_t>(words, 1)}, torch::kLong);
  std::memcpy(packed.data_ptr<int64_t>(), text.data(), text.size());
  const torch::Tensor all = world.all_gather(packed).contiguous();
  std::vector<CaseResult> out;
  for (int64_t r = 0; r < all.size(0); ++r) {
    const auto* data = reinterpret_cast<const char*>(all[r].data_ptr<int64_t>());
    const auto parsed = nlohmann::json::parse(std::string(data, data + lengths[r].item<int64_t>()));
    for (const auto& c : parsed) {
      CaseResult result{c["case"], c["site"], {}};
      for (const auto& m : c["classes"]) result.classes.push_back(from_json(m));
      out.push_back(std::move(result));
    }
  }
  std::sort(out.begin(), out.end(), [](const CaseResult& a, const CaseResult& b) { return a.case_id < b.case_id; });
  return out;
}

}  // namespace

int64_t evaluate(const EvalOptions& o, cluster::Communicator& world) {
  if (o.batch < 1) throw InputError("--batch", "", str(o.batch, ", expected >= 1"));
  const datastore::Split split = datastore::split_from_string(o.split, "--split");
  const std::string weights = weights_path(o.checkpoint);
  const datastore::DatasetManifest manifest = datastore::load_manifest(o.data);
  model::Cmaformer model(read_weights_config(weights));
  if (model->config().classes != static_cast<int64_t>(manifest.classes.size())) {
    throw InputError(weights, "cmaformer_config.classes",
                     str(model->config().classes, " classes, the dataset ", o.data, " has ", manifest.classes.size()));
  }
  load_weights(*model, weights);
  model->eval();
  std::optional<model::RunningStatisticsCalibration> calibration;  // alive while predicting
  if (o.recalibrate_on != "train" && o.recalibrate_on != "labeled") {
    throw InputError("--recalibrate-on", "", str("'", o.recalibrate_on, "', expected train or labeled"));
  }
  if (o.recalibrate_bn) {
    std::vector<CalibrationCase> train;
    int64_t index = 0;
    for (const auto& c : manifest.cases) {
      if (c.split != datastore::Split::kTrain || (o.recalibrate_on == "labeled" && !c.labeled)) continue;
      if (index++ % world.size() == world.rank()) train.push_back({(fs::path(o.data) / c.file).string(), c.shape[0]});
    }
    if (index == 0) {
      throw InputError(datastore::manifest_path(o.data), "cases",
                       str("--recalibrate-bn: no ", o.recalibrate_on == "labeled" ? "labeled " : "", "case in split 'train'"));
    }
    calibration.emplace(*model);
    calibrate_on_slices(*model, *calibration, train, model->config().input_size, o.batch, /*seed=*/0,
                        model::module_device(*model), world);
  }
  // Largest case first onto the least loaded rank: the same plan on every rank.
  std::vector<const datastore::ManifestCase*> cases;
  for (const auto& c : manifest.cases) {
    if (c.split == split) cases.push_back(&c);
  }
  if (cases.empty()) throw InputError(datastore::manifest_path(o.data), "cases", str("no case in split '", o.split, "'"));
  std::stable_sort(cases.begin(), cases.end(), [](const auto* a, const auto* b) {
    return a->shape[0] * a->shape[1] * a->shape[2] > b->shape[0] * b->shape[1] * b->shape[2];
  });
  std::vector<int64_t> load(static_cast<size_t>(world.size()), 0);
  std::vector<CaseResult> mine;
  std::vector<int> labels;
  for (int c = 1; c < static_cast<int>(manifest.classes.size()); ++c) labels.push_back(c);
  // Work of this rank alone until the gather below: the ranks with less to do wait there for the
  // one with the slowest cases (up to 10 x --stall-seconds, heartbeat_monitor.h).
  world.begin_local_work("whole-volume inference and metrics on this rank's cases");
  for (const auto* c : cases) {
    const auto rank = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    load[static_cast<size_t>(rank)] += c->shape[0] * c->shape[1] * c->shape[2];
    if (rank != world.rank()) continue;
    const auto start = std::chrono::steady_clock::now();
    test_delay("CMAF_EVAL_CASE_DELAY_MS");
    const datastore::CaseFile file((fs::path(o.data) / c->file).string());
    std::vector<uint8_t> prediction =
        predict_volume(*model, file.read_image(), file.metadata().geometry.shape, o.batch, o.flip_tta);
    if (o.largest_component) keep_largest_component(prediction, file.metadata().geometry.shape);
    if (o.save_predictions) {
      fs::create_directories(fs::path(o.out) / "predictions");
      datastore::write_nifti((fs::path(o.out) / "predictions" / (c->id + ".nii.gz")).string(),
                             file.metadata().geometry, prediction.data());
    }
    if (file.has_label()) {
      const std::vector<uint8_t> truth = file.read_label(datastore::LabelUse::kEvaluation);
      mine.push_back({c->id, c->site,
                      case_metrics(prediction, truth, file.metadata().geometry.shape, file.metadata().geometry.spacing,
                                   labels)});
    }
    LOG(INFO) << "rank " << world.rank() << ": " << c->id << " (" << file.metadata().geometry.shape_string() << ") in "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s";
  }
  const std::vector<CaseResult> all = gather(mine, world);
  if (world.rank() == 0) {
    write_metric_reports((fs::path(o.out) / "metrics.json").string(), all, manifest.classes,
                         {{"checkpoint", o.checkpoint},
                          {"data", o.data},
                          {"split", o.split},
                          {"flip_tta", o.flip_tta},
                          {"recalibrate_bn", o.recalibrate_bn},
                          {"recalibrate_on", o.recalibrate_bn ? o.recalibrate_on : ""},
                          {"largest_component", o.largest_component}});
  }
  return world.rank() == 0 ? static_cast<int64_t>(all.size()) : static_cast<int64_t>(mine.size());
}

}  // namespace cmaf::core
