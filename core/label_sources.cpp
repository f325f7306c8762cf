#include "core/label_sources.h"

#include <filesystem>

#include "common/error.h"
#include "datastore/case_file.h"
#include "datastore/manifest.h"
#include "datastore/nifti_volume.h"

namespace cmaf::core {
namespace {

namespace fs = std::filesystem;

std::string nifti_case_id(const fs::path& file) {
  const std::string name = file.filename().string();
  for (const std::string suffix : {".nii.gz", ".nii"}) {
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return name.substr(0, name.size() - suffix.size());
    }
  }
  return "";
}

}  // namespace

std::map<std::string, std::string> list_label_sources(const std::string& path, const std::string& split) {
  std::map<std::string, std::string> out;
  if (fs::is_regular_file(path)) {
    const std::string id = nifti_case_id(path);
    if (id.empty()) throw InputError(path, "", "expected a NIfTI label file (.nii or .nii.gz), a folder of them, or a dataset");
    out[id] = path;
    return out;
  }
  if (!fs::is_directory(path)) throw InputError(path, "", "does not exist");
  if (datastore::has_manifest(path)) {
    const datastore::Split wanted = datastore::split_from_string(split, "--split");
    for (const auto& c : datastore::load_manifest(path).cases) {
      if (c.has_label && c.split == wanted) out[c.id] = c.file;
    }
    if (out.empty()) throw InputError(path, "cases", str("no labeled case in split '", split, "'"));
    return out;
  }
  for (const auto& entry : fs::directory_iterator(path)) {
    const std::string id = nifti_case_id(entry.path());
    if (entry.is_regular_file() && !id.empty()) out[id] = entry.path().string();
  }
  if (out.empty()) throw InputError(path, "", "holds no .nii/.nii.gz file and no manifest.json");
  return out;
}

LabelVolume read_label_source(const std::string& path, const std::string& case_id, const std::string& where) {
  LabelVolume v;
  v.case_id = case_id;
  if (fs::is_directory(path) && datastore::has_manifest(path)) {
    const datastore::CaseFile file((fs::path(path) / where).string());
    v.origin = file.path();
    v.site = file.metadata().site;
    v.geometry = file.metadata().geometry;
    v.labels = file.read_label(datastore::LabelUse::kEvaluation);
    return v;
  }
  const datastore::Volume<int32_t> read = datastore::read_nifti_labels(where);
  v.origin = where;
  v.geometry = read.geometry;
  v.labels.resize(read.voxels.size());
  for (size_t i = 0; i < read.voxels.size(); ++i) {
    const int32_t id = read.voxels[i];
    if (id < 0 || id > 255) throw InputError(where, "voxels", str("label ", id, " at voxel ", i, ", expected 0..255"));
    v.labels[i] = static_cast<uint8_t>(id);
  }
  return v;
}

}  // namespace cmaf::core
