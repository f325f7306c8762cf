#include "core/pseudo_label_pool.h"

#include <H5Cpp.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <optional>
#include <set>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"
#include "core/batch_norm_calibration.h"
#include "core/checkpoint_store.h"
#include "datastore/case_file.h"
#include "datastore/h5_util.h"
#include "datastore/manifest.h"
#include "model/batch_norm.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPoolFolder = "pool";
constexpr const char* kPoolManifest = "POOL.json";
constexpr const char* kCurrent = "CURRENT";
constexpr int64_t kKeptVersions = 2;

std::string padded(int64_t value, int width) {
  std::ostringstream out;
  out << std::setw(width) << std::setfill('0') << value;
  return out.str();
}

std::string rank_file(int rank) { return "rank-" + padded(rank, 5) + ".h5"; }

// Versions named by the checkpoints of the run (they must stay readable for a resume).
std::set<int64_t> versions_in_checkpoints(const std::string& run_dir) {
  std::set<int64_t> out;
  for (const std::string& folder : list_checkpoints(run_dir)) {
    const nlohmann::json state = nlohmann::json::parse(std::ifstream(fs::path(folder) / "state.json"), nullptr, false);
    if (!state.is_discarded() && state.contains("state")) out.insert(state["state"].value("pool_version", int64_t{0}));
  }
  return out;
}

}  // namespace

std::string to_string(ThresholdMode mode) { return mode == ThresholdMode::kFixed ? "fixed" : "adaptive"; }

ThresholdMode threshold_mode_from_string(const std::string& text) {
  if (text == "fixed") return ThresholdMode::kFixed;
  if (text == "adaptive") return ThresholdMode::kAdaptive;
  throw InputError("--pool-thresholds", "", str("'", text, "', expected fixed or adaptive"));
}

std::vector<double> pool_thresholds(ThresholdMode mode, double base, const std::vector<double>& predicted,
                                    const std::vector<double>& confident) {
  CMAF_CHECK_EQ(predicted.size(), confident.size(), "one count of each kind per class");
  std::vector<double> thresholds(predicted.size(), base);
  if (mode == ThresholdMode::kFixed) return thresholds;
  std::vector<double> acceptance(predicted.size(), 0.0);
  double best = 0.0;
  for (size_t cls = 1; cls < predicted.size(); ++cls) {
    acceptance[cls] = predicted[cls] > 0 ? confident[cls] / predicted[cls] : 0.0;
    best = std::max(best, acceptance[cls]);
  }
  for (size_t cls = 1; cls < predicted.size(); ++cls) {
    thresholds[cls] = base * (0.5 + 0.5 * (best > 0 ? acceptance[cls] / best : 0.0));
  }
  return thresholds;
}

std::vector<double> labeled_class_shares(const datastore::DatasetManifest& manifest, int64_t classes) {
  std::vector<double> voxels(static_cast<size_t>(classes), 0.0);
  for (const datastore::ManifestCase& mc : manifest.cases) {
    if (!mc.labeled || mc.split != datastore::Split::kTrain) continue;
    for (size_t cls = 0; cls < voxels.size() && cls < mc.class_voxels.size(); ++cls) {
      voxels[cls] += static_cast<double>(mc.class_voxels[cls]);
    }
  }
  double total = 0.0;
  for (const double v : voxels) total += v;
  if (total > 0) {
    for (double& v : voxels) v /= total;
  }
  return voxels;
}

std::vector<bool> prior_gate(double ratio, const std::vector<double>& prior, const std::vector<double>& confident,
                             double pixels) {
  CMAF_CHECK_EQ(prior.size(), confident.size(), "one prior share and one confident count per class");
  std::vector<bool> accepted(prior.size(), true);
  if (ratio <= 0) return accepted;
  for (size_t cls = 1; cls < prior.size(); ++cls) {
    if (prior[cls] <= 0) continue;
    const double share = pixels > 0 ? confident[cls] / pixels : 0.0;
    accepted[cls] = share >= prior[cls] / ratio && share <= prior[cls] * ratio;
  }
  return accepted;
}

PseudoLabelPool::PseudoLabelPool(PoolOptions options, cluster::Communicator& world)
    : options_(std::move(options)), world_(world) {
  CMAF_CHECK(options_.input_size > 0 && options_.classes > 1, "pool options");
}

std::string PseudoLabelPool::version_folder(int64_t version) const {
  return (fs::path(options_.run_dir) / kPoolFolder / ("v" + padded(version, 6))).string();
}

nlohmann::json PseudoLabelPool::refresh(model::CmaformerImpl& teacher, const sharding::RankShard& shard,
                                        int64_t step) {
  const int64_t next = version_ + 1;
  const fs::path folder = version_folder(next);
  fs::create_directories(folder);
  const int64_t s = options_.input_size;
  const int64_t k = options_.classes;
  // Counts per class: [predicted, confident at the base threshold]; per site likewise.
  const datastore::DatasetManifest manifest = datastore::load_manifest(options_.dataset_dir);
  const auto sites = static_cast<int64_t>(manifest.sites.size());
  at::Tensor counts = torch::zeros({(1 + sites) * k * 2}, torch::kDouble);
  auto* c = counts.data_ptr<double>();
  const bool was_training = teacher.is_training();
  const torch::Device device = model::module_device(teacher);
  teacher.eval();
  std::optional<model::RunningStatisticsCalibration> calibration;  // restores the statistics on return
  if (options_.recalibrate_batch_norm) {
    calibration.emplace(teacher);
    std::vector<CalibrationCase> cases;
    std::set<std::string> seen;
    for (const sharding::ShardCase& sc : shard.unlabeled) {
      if (seen.insert(sc.id).second) cases.push_back({(fs::path(options_.dataset_dir) / sc.file).string(), sc.slices});
    }
    calibrate_on_slices(teacher, *calibration, cases, s, options_.batch, static_cast<uint64_t>(step), device, world_);
  }
  {
    // Shards differ in size: ranks done first wait for the others in the all-reduce below.
    world_.begin_local_work(str("pseudo-label inference on this rank's unlabeled cases, step ", step));
    AtomicFile out((folder / rank_file(world_.rank())).string());
    datastore::h5::guarded(out.temp_path(), "/", "writing the pseudo-label pool", [&] {
      H5::H5File h5(out.temp_path(), H5F_ACC_TRUNC);
      torch::NoGradGuard no_grad;
      std::set<std::string> done;
      for (const sharding::ShardCase& sc : shard.unlabeled) {
        if (!done.insert(sc.id).second) continue;
        const datastore::CaseFile file((fs::path(options_.dataset_dir) / sc.file).string());
        const auto& shape = file.metadata().geometry.shape;
        const std::vector<float> image = file.read_image();
        std::vector<uint8_t> label(static_cast<size_t>(shape[0] * s * s));
        std::vector<uint8_t> confidence(label.size());
        const datastore::SliceWarp resize(shape[1], shape[2], s, s, datastore::GeometricParams{});
        const auto site = static_cast<int64_t>(
            std::find_if(manifest.sites.begin(), manifest.sites.end(), [&](const auto& r) { return r.name == sc.site; }) -
            manifest.sites.begin());
        for (int64_t start = 0; start < shape[0]; start += options_.batch) {
          const int64_t n = std::min(options_.batch, shape[0] - start);
          torch::Tensor x = torch::empty({n, 1, s, s});
          for (int64_t i = 0; i < n; ++i) {
            datastore::warp_image(image.data() + (start + i) * shape[1] * shape[2], resize, x[i].data_ptr<float>());
          }
          const auto [conf, arg] = torch::softmax(teacher.forward(x.to(device)).to(torch::kCPU, torch::kFloat), 1).max(1);
          const at::Tensor l8 = arg.to(torch::kUInt8).contiguous();
          const at::Tensor c8 = (conf * 255.0).round().clamp(0, 255).to(torch::kUInt8).contiguous();
          std::copy(l8.data_ptr<uint8_t>(), l8.data_ptr<uint8_t>() + n * s * s, label.begin() + start * s * s);
          std::copy(c8.data_ptr<uint8_t>(), c8.data_ptr<uint8_t>() + n * s * s, confidence.begin() + start * s * s);
          for (int64_t cls = 0; cls < k; ++cls) {
            const at::Tensor is = arg.eq(cls);
            const double predicted = is.sum().item<double>();
            const double confident = is.logical_and(conf.ge(options_.base_threshold)).sum().item<double>();
            for (const int64_t row : {int64_t{0}, site < sites ? 1 + site : int64_t{-1}}) {
              if (row < 0) continue;
              c[(row * k + cls) * 2] += predicted;
              c[(row * k + cls) * 2 + 1] += confident;
            }
          }
        }
        H5::Group group = h5.createGroup(sc.id);
        const hsize_t dims[3] = {static_cast<hsize_t>(shape[0]), static_cast<hsize_t>(s), static_cast<hsize_t>(s)};
        H5::DataSpace space(3, dims);
        group.createDataSet("label", H5::PredType::STD_U8LE, space).write(label.data(), H5::PredType::NATIVE_UINT8);
        group.createDataSet("confidence", H5::PredType::STD_U8LE, space)
            .write(confidence.data(), H5::PredType::NATIVE_UINT8);
      }
    });
    out.commit();
  }
  if (was_training) teacher.train();
  world_.all_reduce(counts, cluster::ReduceOp::kSum);
  world_.barrier();  // every rank's file is in place
  // Thresholds and statistics: a function of the all-reduced counts, identical everywhere.
  std::vector<double> predicted_counts(static_cast<size_t>(k)), confident_counts(static_cast<size_t>(k));
  for (int64_t cls = 0; cls < k; ++cls) {
    predicted_counts[static_cast<size_t>(cls)] = c[cls * 2];
    confident_counts[static_cast<size_t>(cls)] = c[cls * 2 + 1];
  }
  const std::vector<double> thresholds =
      pool_thresholds(options_.mode, options_.base_threshold, predicted_counts, confident_counts);
  double pixels = 0.0;
  for (const double v : predicted_counts) pixels += v;
  const std::vector<double> prior = labeled_class_shares(manifest, k);
  const std::vector<bool> accepted = prior_gate(options_.prior_ratio, prior, confident_counts, pixels);
  nlohmann::json classes = nlohmann::json::object();
  for (int64_t cls = 0; cls < k; ++cls) {
    const auto i = static_cast<size_t>(cls);
    classes[manifest.classes[i]] = {{"predicted_pixels", c[cls * 2]},
                                    {"confident_pixels", c[cls * 2 + 1]},
                                    {"threshold", thresholds[i]},
                                    {"confident_share", pixels > 0 ? c[cls * 2 + 1] / pixels : 0.0},
                                    {"prior_share", prior[i]},
                                    {"accepted", static_cast<bool>(accepted[i])}};
  }
  nlohmann::json per_site = nlohmann::json::object();
  for (int64_t site = 0; site < sites; ++site) {
    double predicted = 0, confident = 0;
    for (int64_t cls = 1; cls < k; ++cls) {
      predicted += c[((1 + site) * k + cls) * 2];
      confident += c[((1 + site) * k + cls) * 2 + 1];
    }
    per_site[manifest.sites[static_cast<size_t>(site)].name] = {
        {"foreground_pixels", predicted}, {"confident_share", predicted > 0 ? confident / predicted : 0.0}};
  }
  const nlohmann::json pool = {{"version", next},          {"step", step},
                               {"mode", to_string(options_.mode)}, {"base_threshold", options_.base_threshold},
                               {"thresholds", thresholds}, {"prior_ratio", options_.prior_ratio},
                               {"accepted", accepted},     {"classes", classes},
                               {"sites", per_site},        {"ranks", world_.size()}};
  if (world_.rank() == 0) {
    write_file_atomically((folder / kPoolManifest).string(), pool.dump(2) + "\n");
    write_file_atomically((fs::path(options_.run_dir) / kPoolFolder / kCurrent).string(), str(next, "\n"));
    version_ = next;
    retire_old_versions();
  }
  world_.barrier();  // published
  load(next, shard);
  return pool;
}

void PseudoLabelPool::retire_old_versions() const {
  const std::set<int64_t> named = versions_in_checkpoints(options_.run_dir);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(options_.run_dir) / kPoolFolder)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.size() != 7 || name[0] != 'v') continue;
    const int64_t v = std::stoll(name.substr(1));
    if (v > version_ - kKeptVersions && v <= version_) continue;
    if (named.count(v) != 0) continue;
    fs::remove_all(entry.path(), ec);
  }
}

void PseudoLabelPool::load(int64_t version, const sharding::RankShard& shard) {
  const fs::path folder = version_folder(version);
  const fs::path manifest = folder / kPoolManifest;
  const nlohmann::json pool = nlohmann::json::parse(std::ifstream(manifest), nullptr, false);
  if (pool.is_discarded()) {
    throw IoError(str("pseudo-label pool version ", version, ": ", manifest.string(),
                      " is missing or unreadable (the version a checkpoint names must exist to resume)"));
  }
  thresholds_ = pool.at("thresholds").get<std::vector<double>>();
  // Versions written before the organ gate existed accept every organ.
  accepted_ = pool.value("accepted", std::vector<bool>(thresholds_.size(), true));
  if (accepted_.size() != thresholds_.size()) {
    throw IoError(str(manifest.string(), ": field 'accepted' holds ", accepted_.size(),
                      " flags, expected one per class (", thresholds_.size(), ")"));
  }
  cases_.clear();
  std::set<std::string> wanted;
  for (const auto& sc : shard.unlabeled) wanted.insert(sc.id);
  std::map<std::string, std::string> id_to_file;
  for (const auto& sc : shard.unlabeled) id_to_file[sc.id] = sc.file;
  for (int r = 0; r < pool.at("ranks").get<int>() && !wanted.empty(); ++r) {
    const std::string path = (folder / rank_file(r)).string();
    datastore::h5::guarded(path, "/", "reading the pseudo-label pool", [&] {
      H5::H5File h5(path, H5F_ACC_RDONLY);
      for (auto it = wanted.begin(); it != wanted.end();) {
        if (!h5.nameExists(*it)) {
          ++it;
          continue;
        }
        H5::Group group = h5.openGroup(*it);
        CaseLabels& labels = cases_[id_to_file[*it]];
        H5::DataSet label = group.openDataSet("label");
        const auto dims = datastore::h5::dims3(label, "label", path);
        labels.slices = static_cast<int64_t>(dims[0]);
        labels.label.resize(dims[0] * dims[1] * dims[2]);
        labels.confidence.resize(labels.label.size());
        label.read(labels.label.data(), H5::PredType::NATIVE_UINT8);
        group.openDataSet("confidence").read(labels.confidence.data(), H5::PredType::NATIVE_UINT8);
        it = wanted.erase(it);
      }
    });
  }
  if (!wanted.empty()) {
    throw IoError(str("pseudo-label pool ", folder.string(), " has no labels for case ", *wanted.begin()));
  }
  version_ = version;
}

PoolTargets PseudoLabelPool::targets(const std::vector<std::pair<std::string, int64_t>>& slices,
                                     const std::vector<datastore::GeometricParams>& geometry) const {
  const int64_t s = options_.input_size;
  const auto n = static_cast<int64_t>(slices.size());
  PoolTargets t{torch::empty({n, s, s}, torch::kLong), torch::empty({n, s, s})};
  std::vector<uint8_t> label(static_cast<size_t>(s * s));
  std::vector<uint8_t> confidence(label.size());
  for (int64_t i = 0; i < n; ++i) {
    const auto& [file, z] = slices[static_cast<size_t>(i)];
    const auto it = cases_.find(file);
    if (it == cases_.end() || z < 0 || z >= it->second.slices) {
      throw InternalError(str("pseudo-label pool version ", version_, " has no slice ", z, " of ", file));
    }
    const datastore::SliceWarp warp(s, s, s, s, geometry[static_cast<size_t>(i)]);
    datastore::warp_label(it->second.label.data() + z * s * s, warp, label.data());
    datastore::warp_label(it->second.confidence.data() + z * s * s, warp, confidence.data());
    auto* out_label = t.labels[i].data_ptr<int64_t>();
    auto* out_confidence = t.confidence[i].data_ptr<float>();
    for (int64_t p = 0; p < s * s; ++p) {
      const uint8_t cls = label[static_cast<size_t>(p)];
      const bool accepted = accepted_[cls] && confidence[static_cast<size_t>(p)] / 255.0 >= thresholds_[cls];
      out_label[p] = accepted ? label[static_cast<size_t>(p)] : -1;
      out_confidence[p] = accepted ? 1.0F : 0.0F;
    }
  }
  return t;
}

}  // namespace cmaf::core
