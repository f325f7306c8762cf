#include "datastore/inspect.h"

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "common/atomic_file.h"
#include "common/error.h"
#include "datastore/case_file.h"
#include "datastore/h5_volume_source.h"
#include "datastore/nifti_volume.h"
#include "datastore/volume_checks.h"

namespace cmaf::datastore {
namespace fs = std::filesystem;

namespace {

void check_data(const CaseFile& file, const ManifestCase& entry, size_t class_count,
                std::vector<std::string>& problems) {
  const std::vector<float> image = file.read_image();
  check_finite(image, file.metadata().geometry, file.path());
  if (!entry.has_label) return;
  const std::vector<uint8_t> label = file.read_label(LabelUse::kEvaluation);
  for (size_t i = 0; i < label.size(); ++i) {
    if (label[i] >= class_count) {
      problems.push_back(str(file.path(), ": dataset 'label': value ", int(label[i]), " at index ",
                             i, " is outside the ", class_count, " classes"));
      return;
    }
  }
  const LabelStatistics stats = label_statistics(label, file.metadata().geometry, class_count);
  if (stats.class_voxels != entry.class_voxels || stats.class_slices != entry.class_slices) {
    problems.push_back(str(file.path(), ": dataset 'label': class counts differ from manifest "
                                        "entry class_voxels/class_slices"));
  }
}

bool is_nifti(const std::string& path) {
  return path.size() > 4 && (path.substr(path.size() - 4) == ".nii" ||
                             (path.size() > 7 && path.substr(path.size() - 7) == ".nii.gz"));
}

// Re-reads the source label, maps it with the site's recorded map, and recounts.
void check_against_source(const CaseFile& file, const ManifestCase& entry,
                          const DatasetManifest& manifest, InspectReport& report) {
  const std::string& source = file.metadata().source_label;
  if (!entry.has_label || source.empty()) return;
  if (!fs::exists(source)) {
    report.warnings.push_back(str(file.path(), ": source label ", source, " is gone; not compared"));
    return;
  }
  const nlohmann::json& preprocessing = manifest.find_site(entry.site)->preprocessing;
  if (!preprocessing.contains("label_map")) {
    report.warnings.push_back(str(file.path(), ": site '", entry.site,
                                  "' records no label map; not compared with its source"));
    return;
  }
  const auto target_of_source =
      preprocessing.at("label_map").at("target_of_source").get<std::vector<int>>();
  const Volume<int32_t> labels =
      is_nifti(source) ? read_nifti_labels(source)
                       : read_h5_volume_labels(source, read_h5_volume_header(source, entry.spacing));
  std::vector<int64_t> counts(manifest.classes.size(), 0);
  for (int32_t v : labels.voxels) {
    const int target = v >= 0 && v < static_cast<int32_t>(target_of_source.size())
                           ? target_of_source[static_cast<size_t>(v)] : -1;
    if (target < 0) {
      report.problems.push_back(str(source, ": label value ", v, " is not in the recorded label map"));
      return;
    }
    ++counts[static_cast<size_t>(target)];
  }
  if (labels.geometry.shape[0] != entry.slices()) {
    report.problems.push_back(str(file.path(), ": ", entry.slices(), " slices, source ", source,
                                  " has ", labels.geometry.shape[0]));
  }
  if (counts != entry.class_voxels) {
    report.problems.push_back(str(file.path(), ": class voxel counts differ from source ", source));
  }
}

void check_case(const std::string& dir, const ManifestCase& entry, size_t class_count,
                bool verify_data, std::vector<std::string>& problems) {
  const std::string path = (fs::path(dir) / entry.file).string();
  try {
    const CaseFile file(path);
    const CaseMetadata& m = file.metadata();
    auto mismatch = [&](const std::string& field, const std::string& found, const std::string& listed) {
      problems.push_back(str(path, ": ", field, ": file has ", found, ", manifest lists ", listed));
    };
    if (m.case_id != entry.id) mismatch("case_id", m.case_id, entry.id);
    if (m.site != entry.site) mismatch("site", m.site, entry.site);
    if (m.geometry.shape != entry.shape) {
      mismatch("shape", m.geometry.shape_string(),
               str(entry.shape[0], "x", entry.shape[1], "x", entry.shape[2]));
    }
    if (m.geometry.spacing != entry.spacing) mismatch("spacing", m.geometry.spacing_string(), "other");
    if (file.has_label() != entry.has_label) {
      mismatch("label", file.has_label() ? "a label" : "no label", entry.has_label ? "one" : "none");
    }
    if ((m.label_role == LabelRole::kSupervision) != entry.labeled) {
      mismatch("label_role", to_string(m.label_role), entry.labeled ? "labeled" : "unlabeled");
    }
    if (verify_data) check_data(file, entry, class_count, problems);
  } catch (const InputError& e) {
    problems.push_back(e.what());
  }
}

void check_folder_contents(const std::string& dir, const DatasetManifest& manifest,
                           InspectReport& report) {
  std::set<std::string> listed;
  for (const ManifestCase& c : manifest.cases) listed.insert(fs::path(c.file).filename().string());
  const fs::path cases = fs::path(dir) / kCasesFolder;
  if (!fs::is_directory(cases)) return;
  for (const auto& entry : fs::directory_iterator(cases)) {
    const std::string name = entry.path().filename().string();
    if (is_atomic_temp_name(name)) {
      report.warnings.push_back(str(entry.path().string(),
                                    ": leftover of an interrupted write (safe to delete)"));
    } else if (listed.count(name) == 0) {
      report.warnings.push_back(str(entry.path().string(),
                                    ": not listed in the manifest (ignored by every stage)"));
    }
  }
}

std::string percent(double fraction) {
  std::ostringstream out;
  out << std::setprecision(fraction >= 0.01 ? 3 : 2) << 100.0 * fraction << " %";
  return out.str();
}

}  // namespace

InspectReport inspect_dataset(const std::string& dir, const InspectOptions& options) {
  InspectReport report;
  report.dir = dir;
  report.manifest = load_manifest(dir);
  for (const ManifestCase& c : report.manifest.cases) {
    check_case(dir, c, report.manifest.classes.size(), options.verify_data, report.problems);
    ++report.files_checked;
    if (options.verify_sources && report.problems.empty()) {
      try {
        check_against_source(CaseFile((fs::path(dir) / c.file).string()), c, report.manifest, report);
      } catch (const InputError& e) {
        report.problems.push_back(e.what());
      }
    }
  }
  check_folder_contents(dir, report.manifest, report);
  return report;
}

std::string InspectReport::to_text() const {
  const DatasetManifest& m = manifest;
  std::ostringstream out;
  int64_t slices = 0;
  for (const ManifestCase& c : m.cases) slices += c.slices();
  out << "dataset " << dir << ": " << m.cases.size() << " cases, " << slices << " slices, "
      << m.classes.size() << " classes, " << m.sites.size() << " site(s)\n\n";

  struct Row { int64_t cases = 0, labeled = 0, unlabeled = 0, with_label = 0, slices = 0; };
  std::map<std::pair<std::string, std::string>, Row> rows;
  for (const ManifestCase& c : m.cases) {
    Row& r = rows[{to_string(c.split), c.site}];
    r.cases += 1;
    r.labeled += c.labeled ? 1 : 0;
    r.unlabeled += (c.split == Split::kTrain && !c.labeled) ? 1 : 0;
    r.with_label += c.has_label ? 1 : 0;
    r.slices += c.slices();
  }
  out << std::left << std::setw(7) << "split" << std::setw(16) << "site" << std::right
      << std::setw(7) << "cases" << std::setw(9) << "labeled" << std::setw(11) << "unlabeled"
      << std::setw(12) << "with label" << std::setw(9) << "slices" << "\n";
  for (const auto& [key, r] : rows) {
    out << std::left << std::setw(7) << key.first << std::setw(16) << key.second << std::right
        << std::setw(7) << r.cases << std::setw(9) << r.labeled << std::setw(11) << r.unlabeled
        << std::setw(12) << r.with_label << std::setw(9) << r.slices << "\n";
  }

  std::vector<int64_t> voxels(m.classes.size(), 0), class_slices(m.classes.size(), 0);
  int64_t total = 0;
  for (const ManifestCase& c : m.cases) {
    for (size_t k = 0; k < c.class_voxels.size(); ++k) {
      voxels[k] += c.class_voxels[k];
      class_slices[k] += c.class_slices[k];
      total += c.class_voxels[k];
    }
  }
  int64_t largest = 1;
  for (size_t k = 1; k < voxels.size(); ++k) largest = std::max(largest, voxels[k]);
  out << "\nclass frequencies over the cases with a label (" << total << " voxels):\n"
      << std::right << std::setw(4) << "id" << "  " << std::left << std::setw(24) << "class"
      << std::right << std::setw(12) << "voxels" << std::setw(10) << "share" << std::setw(9)
      << "slices" << "  largest organ / this\n";
  for (size_t k = 0; k < m.classes.size(); ++k) {
    out << std::setw(4) << k << "  " << std::left << std::setw(24) << m.classes[k] << std::right
        << std::setw(12) << voxels[k] << std::setw(10)
        << (total > 0 ? percent(static_cast<double>(voxels[k]) / total) : "-") << std::setw(9)
        << class_slices[k] << "  ";
    if (k > 0 && voxels[k] > 0) {
      out << std::setprecision(3) << static_cast<double>(largest) / voxels[k];
    } else if (k > 0) {
      out << "absent";
    }
    out << "\n";
  }
  out << "\nfiles: " << files_checked << " checked, " << problems.size() << " problem(s), "
      << warnings.size() << " warning(s)\n";
  for (const std::string& p : problems) out << "  problem: " << p << "\n";
  for (const std::string& w : warnings) out << "  warning: " << w << "\n";
  return out.str();
}

nlohmann::json InspectReport::to_json() const {
  return {{"dir", dir},
          {"files_checked", files_checked},
          {"problems", problems},
          {"warnings", warnings},
          {"manifest", datastore::to_json(manifest)}};
}

}  // namespace cmaf::datastore
