#include "datastore/prep.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>

#include "common/error.h"
#include "datastore/dataset_writer.h"
#include "datastore/h5_volume_source.h"
#include "datastore/label_map.h"
#include "datastore/nifti_volume.h"
#include "datastore/prep_source.h"
#include "datastore/volume_checks.h"

namespace cmaf::datastore {
namespace fs = std::filesystem;

namespace {

struct PlannedCase {
  SourceCase source;
  std::string id;  // with --case-prefix
  H5VolumeHeader h5_header;
  Split split = Split::kTrain;
  LabelRole role = LabelRole::kNone;
};

IntensityNormalization choose_normalization(const PrepOptions& o, const SourceDataset& source) {
  std::string kind = o.normalization;
  if (kind == "auto") {
    if (source.format == SourceFormat::kH5) {
      kind = "none";  // TransUNet/SSL4MIS volumes are stored preprocessed
    } else if (source.modality == "CT" || source.modality == "ct") {
      kind = "ct-window";
    } else if (!source.modality.empty()) {
      kind = "mr-percentile";
    } else {
      throw InputError(source.root + "/dataset.json", "channel_names",
                       "declares no modality: give --normalization ct-window|mr-percentile|none");
    }
  }
  const std::string& range = kind == "mr-percentile" ? o.percentiles : o.window;
  return parse_intensity_normalization(kind, range, "--normalization");
}

std::vector<std::string> source_class_names(const PrepOptions& o, const SourceDataset& source) {
  if (!source.classes.empty()) return source.classes;
  if (o.source_classes < 2) {
    throw InputError("--source-classes", "",
                     str(o.source_classes, ": HDF5 inputs declare no classes; give the number of "
                                           "label ids including background (>= 2)"));
  }
  std::vector<std::string> names{"background"};
  for (int id = 1; id < o.source_classes; ++id) names.push_back(str("class_", id));
  return names;
}

// Reads every header: shapes, spacings, affines, label presence. Nothing is written yet.
std::vector<PlannedCase> validate_headers(const PrepOptions& o, const SourceDataset& source) {
  std::vector<PlannedCase> planned;
  for (const SourceCase& c : source.cases) {
    if (c.from_test_folder && o.images_ts == "skip") continue;
    PlannedCase p{c, o.case_prefix + c.id, {}, Split::kTrain, LabelRole::kNone};
    if (source.format == SourceFormat::kNnUnet) {
      const NiftiHeader image = read_nifti_header(c.image_path);
      if (!c.label_path.empty()) {
        const NiftiHeader label = read_nifti_header(c.label_path);
        check_same_grid(image.geometry, c.image_path, label.geometry, c.label_path);
      }
    } else {
      p.h5_header = read_h5_volume_header(c.image_path, o.spacing);
      if (!p.h5_header.has_label) p.source.label_path.clear();
    }
    planned.push_back(std::move(p));
  }
  if (planned.empty()) throw InputError(o.input, "", "no cases to prepare");
  return planned;
}

void assign_splits(const PrepOptions& o, std::vector<PlannedCase>& planned) {
  std::vector<std::string> candidates;
  for (const PlannedCase& p : planned) {
    if (!p.source.from_test_folder && !p.source.label_path.empty()) candidates.push_back(p.source.id);
  }
  const auto plan = plan_splits(candidates, o.splits);
  for (PlannedCase& p : planned) {
    const bool has_label = !p.source.label_path.empty();
    if (p.source.from_test_folder) {
      p.split = o.images_ts == "test" ? Split::kTest : Split::kTrain;
      p.role = has_label ? LabelRole::kEvaluationOnly : LabelRole::kNone;
    } else if (const auto it = plan.find(p.source.id); it != plan.end()) {
      p.split = it->second.split;
      p.role = it->second.labeled ? LabelRole::kSupervision : LabelRole::kEvaluationOnly;
    }
  }
}

struct LoadedCase {
  Volume<float> image;
  std::vector<uint8_t> label;
  std::vector<int64_t> constant_slices;
  float constant_value = 0.0f;  // the first constant slice's value, as read
};

LoadedCase load_case(const PlannedCase& p, SourceFormat format, const IntensityNormalization& how,
                     const LabelMap& map) {
  const SourceCase& c = p.source;
  LoadedCase loaded;
  const bool nifti = format == SourceFormat::kNnUnet;
  loaded.image = nifti ? read_nifti_image(c.image_path) : read_h5_volume_image(c.image_path, p.h5_header);
  check_finite(loaded.image.voxels, loaded.image.geometry, c.image_path);
  check_not_constant(loaded.image.voxels, c.image_path);
  loaded.constant_slices = constant_slices(loaded.image.voxels, loaded.image.geometry);
  if (!loaded.constant_slices.empty()) {
    loaded.constant_value = loaded.image.voxels[static_cast<size_t>(
        loaded.constant_slices.front() * loaded.image.geometry.shape[1] * loaded.image.geometry.shape[2])];
  }
  normalize_intensities(loaded.image.voxels, how, c.image_path);
  if (p.role != LabelRole::kNone) {
    const Volume<int32_t> labels =
        nifti ? read_nifti_labels(c.label_path) : read_h5_volume_labels(c.label_path, p.h5_header);
    check_same_grid(loaded.image.geometry, c.image_path, labels.geometry, c.label_path);
    loaded.label = apply_label_map(labels, map, c.label_path);
  }
  return loaded;
}

int64_t file_bytes(const std::string& path) {
  std::error_code error;
  const auto size = fs::file_size(path, error);
  return error ? 0 : static_cast<int64_t>(size);
}

}  // namespace

PrepReport run_prep(const PrepOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  if (o.images_ts != "test" && o.images_ts != "unlabeled" && o.images_ts != "skip") {
    throw InputError("--images-ts", "", str("'", o.images_ts, "', expected test, unlabeled or skip"));
  }
  if (o.site.empty()) throw InputError("--site", "", "is empty, expected a site name");

  const SourceDataset source = discover_source(o.input, o.format);
  const IntensityNormalization how = choose_normalization(o, source);
  const LabelMap map = parse_label_map(o.label_map, source_class_names(o, source), o.class_names);
  std::vector<PlannedCase> planned = validate_headers(o, source);
  assign_splits(o, planned);
  if (o.shard_count < 1 || o.shard_index < 0 || o.shard_index >= o.shard_count) {
    throw InputError("--shard", "", str(o.shard_index, "/", o.shard_count, ", expected i/n with 0 <= i < n"));
  }
  if (o.shard_count > 1) {
    std::vector<PlannedCase> mine;
    for (size_t i = 0; i < planned.size(); ++i) {
      if (static_cast<int>(i % static_cast<size_t>(o.shard_count)) == o.shard_index) mine.push_back(planned[i]);
    }
    LOG(INFO) << "prep: shard " << o.shard_index << "/" << o.shard_count << ": " << mine.size() << " of "
              << planned.size() << " cases";
    planned = std::move(mine);
    if (planned.empty()) throw InputError("--shard", "", str(o.shard_index, "/", o.shard_count, " holds no case"));
  }

  DatasetWriter writer(o.out, map.classes);
  for (const PlannedCase& p : planned) writer.check_case_id_free(p.id, p.source.image_path);
  const nlohmann::json preprocessing = {
      {"source_format", source.format == SourceFormat::kNnUnet ? "nnunet" : "h5"},
      {"intensity", how.to_json()},
      {"label_map", map.to_json()}};
  writer.add_site({o.site, fs::absolute(o.input).string(), preprocessing, utc_timestamp()});
  LOG(INFO) << "prep: " << planned.size() << " cases from " << o.input << " into " << o.out
            << (writer.appending() ? " (appending)" : "") << "; intensity " << how.describe()
            << "; label map " << map.spec << " (" << map.classes.size() << " classes)";

  // Two-stage pipeline: the next case is read, checked and normalised on a second thread
  // while this one is compressed and written (decompression and compression overlap).
  auto load_async = [&](size_t i) {
    return std::async(std::launch::async, load_case, std::cref(planned[i]), source.format,
                      std::cref(how), std::cref(map));
  };
  PrepReport report;
  std::future<LoadedCase> next = load_async(0);
  for (size_t i = 0; i < planned.size(); ++i) {
    const PlannedCase& p = planned[i];
    const auto case_start = std::chrono::steady_clock::now();
    const LoadedCase loaded = next.get();
    if (i + 1 < planned.size()) next = load_async(i + 1);
    CaseMetadata metadata;
    metadata.case_id = p.id;
    metadata.site = o.site;
    metadata.geometry = loaded.image.geometry;
    metadata.source_image = fs::absolute(p.source.image_path).string();
    metadata.source_label = p.role == LabelRole::kNone ? "" : fs::absolute(p.source.label_path).string();
    metadata.preprocessing = preprocessing.dump();
    metadata.label_role = p.role;
    writer.add_case(metadata, loaded.image.voxels, loaded.label, p.split);

    report.cases += 1;
    report.slices += metadata.geometry.shape[0];
    if (!loaded.constant_slices.empty()) {
      report.constant_slices += static_cast<int64_t>(loaded.constant_slices.size());
      std::string where;
      for (size_t k = 0; k < loaded.constant_slices.size() && k < 8; ++k) {
        where += str(k == 0 ? "" : ",", loaded.constant_slices[k]);
      }
      if (loaded.constant_slices.size() > 8) where += ",...";
      LOG(WARNING) << p.source.image_path << ": " << loaded.constant_slices.size() << " of "
                   << metadata.geometry.shape[0] << " slices hold a single value (z=" << where << "; the first is all "
                   << loaded.constant_value << "): a blank or padded part of the series, kept; "
                   << "the network will see and, if unlabeled, pseudo-label it like any other slice";
    }
    report.voxels += metadata.geometry.voxel_count();
    report.bytes_read += file_bytes(p.source.image_path) +
                         (metadata.source_label.empty() ? 0 : file_bytes(p.source.label_path));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - case_start).count();
    LOG(INFO) << "[" << i + 1 << "/" << planned.size() << "] " << p.id << ": "
              << metadata.geometry.shape_string() << " " << to_string(p.split) << " "
              << (p.split != Split::kTrain ? (p.role == LabelRole::kNone ? "no label" : "with label")
                                           : (p.role == LabelRole::kSupervision ? "labeled" : "unlabeled"))
              << ", " << seconds
              << " s";
  }
  writer.commit();
  report.bytes_written = writer.bytes_written();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

std::pair<int, int> parse_shard(const std::string& text, const std::string& option) {
  const size_t slash = text.find('/');
  int index = -1;
  int count = 0;
  try {
    size_t a = 0, b = 0;
    index = std::stoi(text.substr(0, slash), &a);
    count = std::stoi(text.substr(slash + 1), &b);
    if (slash == std::string::npos || a != slash || b != text.size() - slash - 1) index = -1;
  } catch (const std::exception&) {
    index = -1;
  }
  if (index < 0 || count < 1 || index >= count) {
    throw UsageError(str(option, " '", text, "': expected i/n with 0 <= i < n (e.g. $SLURM_ARRAY_TASK_ID/4)"));
  }
  return {index, count};
}

int64_t merge_datasets(const std::vector<std::string>& parts, const std::string& out) {
  if (parts.empty()) throw UsageError("cmaformer merge: no part dataset given");
  std::vector<DatasetManifest> manifests;
  for (const std::string& part : parts) manifests.push_back(load_manifest(part));
  for (size_t k = 1; k < manifests.size(); ++k) {
    if (manifests[k].classes != manifests[0].classes) {
      throw InputError(manifest_path(parts[k]), "classes", str("differ from those of ", manifest_path(parts[0])));
    }
  }
  DatasetWriter writer(out, manifests[0].classes);
  for (size_t k = 0; k < parts.size(); ++k) {
    for (const ManifestCase& c : manifests[k].cases) writer.check_case_id_free(c.id, parts[k]);
  }
  int64_t merged = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    for (const SiteRecord& site : manifests[k].sites) writer.add_site(site);
    for (const ManifestCase& c : manifests[k].cases) {
      const CaseFile file((fs::path(parts[k]) / c.file).string());
      const std::vector<uint8_t> label =
          file.has_label() ? file.read_label(LabelUse::kEvaluation) : std::vector<uint8_t>{};
      writer.add_case(file.metadata(), file.read_image(), label, c.split);
      ++merged;
    }
  }
  writer.commit();
  return merged;
}

}  // namespace cmaf::datastore
