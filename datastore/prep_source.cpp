#include "datastore/prep_source.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "common/error.h"

namespace cmaf::datastore {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kChannelSuffix = "_0000";

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

json read_dataset_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path, "", "is missing, expected the nnU-Net dataset.json");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw InputError(path, "", str("is not valid JSON (", e.what(), ")"));
  }
}

// Class names by id from "labels": v2 maps name -> id (ints, or lists for regions), v1 id -> name.
std::vector<std::string> read_classes(const json& labels, const std::string& path) {
  if (!labels.is_object() || labels.empty()) {
    throw InputError(path, "labels", "missing or empty, expected the class names and ids");
  }
  std::map<int, std::string> by_id;
  for (const auto& [key, value] : labels.items()) {
    int id = -1;
    std::string name;
    if (value.is_number_integer()) {
      id = value.get<int>();
      name = key;
    } else if (value.is_string() && !key.empty() &&
               std::all_of(key.begin(), key.end(), ::isdigit)) {
      id = std::stoi(key);
      name = value.get<std::string>();
    } else {
      throw InputError(path, "labels." + key,
                       str("is ", value.dump(), ", expected an integer class id (nnU-Net v2) or "
                                                "a name under a numeric key (v1); region-based "
                                                "labels are not supported"));
    }
    if (id < 0 || id > 255 || !by_id.emplace(id, name).second) {
      throw InputError(path, "labels." + key, str("id ", id, " is out of 0..255 or repeated"));
    }
  }
  std::vector<std::string> classes;
  for (const auto& [id, name] : by_id) {
    if (id != static_cast<int>(classes.size())) {
      throw InputError(path, "labels", str("ids are not consecutive from 0 (missing id ",
                                           classes.size(), ")"));
    }
    classes.push_back(name);
  }
  return classes;
}

std::string read_modality(const json& root, const std::string& path) {
  const char* key = root.contains("channel_names") ? "channel_names" : "modality";
  if (!root.contains(key)) return "";
  const json& channels = root[key];
  if (!channels.is_object() || channels.size() != 1 || !channels.begin()->is_string()) {
    throw InputError(path, key,
                     str(channels.dump(), ": expected exactly one input channel (cmaformer "
                                          "trains on single-channel scans)"));
  }
  return channels.begin()->get<std::string>();
}

std::string require_file(const fs::path& file, const std::string& promised_by) {
  if (!fs::is_regular_file(file)) {
    throw InputError(file.string(), "", str("does not exist, but ", promised_by, " names it"));
  }
  return file.string();
}

// Lists {case id -> image path} of a folder of "{case}_0000{ending}" files.
std::map<std::string, std::string> list_images(const fs::path& folder, const std::string& ending) {
  std::map<std::string, std::string> images;
  if (!fs::is_directory(folder)) return images;
  const std::string suffix = std::string(kChannelSuffix) + ending;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (!ends_with(name, ending) || name[0] == '.') continue;
    if (!ends_with(name, suffix)) {
      if (ends_with(name.substr(0, name.size() - ending.size()), "_0001")) {
        throw InputError(entry.path().string(), "",
                         "is a second input channel, expected single-channel cases (_0000 only)");
      }
      throw InputError(entry.path().string(), "",
                       str("does not follow the nnU-Net name {case}", suffix));
    }
    images[name.substr(0, name.size() - suffix.size())] = entry.path().string();
  }
  return images;
}

void add_cases(SourceDataset& source, const fs::path& image_folder, const fs::path& label_folder,
               const std::string& ending, bool labels_required, bool test_folder) {
  const auto images = list_images(image_folder, ending);
  std::set<std::string> labeled_ids;
  if (fs::is_directory(label_folder)) {
    for (const auto& entry : fs::directory_iterator(label_folder)) {
      const std::string name = entry.path().filename().string();
      if (name[0] == '.' || !ends_with(name, ending)) continue;
      const std::string id = name.substr(0, name.size() - ending.size());
      if (images.count(id) == 0) {
        throw InputError(entry.path().string(), "",
                         str("has no image: expected ", (image_folder / (id + kChannelSuffix + ending)).string()));
      }
      labeled_ids.insert(id);
    }
  }
  for (const auto& [id, image] : images) {
    SourceCase c{id, image, "", test_folder};
    if (labeled_ids.count(id) > 0) {
      c.label_path = (label_folder / (id + ending)).string();
    } else if (labels_required) {
      throw InputError((label_folder / (id + ending)).string(), "",
                       str("is missing: every case in ", image_folder.filename().string(),
                           " needs its label (image ", image, ")"));
    }
    source.cases.push_back(c);
  }
}

// nnU-Net v1 lists its files: check that each one exists.
void check_v1_listing(const json& root, const fs::path& base, const std::string& path) {
  if (!root.contains("training")) return;
  const json& training = root["training"];
  for (size_t i = 0; i < training.size(); ++i) {
    for (const char* key : {"image", "label"}) {
      if (!training[i].contains(key) || !training[i][key].is_string()) continue;
      fs::path file = base / training[i][key].get<std::string>();
      if (std::string(key) == "image" && !fs::exists(file)) {
        // v1 lists images without the channel suffix; the files on disk carry _0000.
        const std::string name = file.filename().string();
        const std::string ending = ends_with(name, ".nii.gz") ? ".nii.gz" : file.extension().string();
        file = file.parent_path() / (name.substr(0, name.size() - ending.size()) + kChannelSuffix + ending);
      }
      require_file(file, str(path, " training[", i, "].", key));
    }
  }
}

SourceDataset discover_nnunet(const fs::path& root) {
  const std::string json_path = (root / "dataset.json").string();
  const json description = read_dataset_json(json_path);
  SourceDataset source;
  source.format = SourceFormat::kNnUnet;
  source.root = root.string();
  source.classes = read_classes(description.value("labels", json()), json_path);
  source.modality = read_modality(description, json_path);
  const std::string ending = description.value("file_ending", std::string(".nii.gz"));
  if (ending != ".nii.gz" && ending != ".nii") {
    throw InputError(json_path, "file_ending", str("'", ending, "', expected .nii.gz or .nii"));
  }
  check_v1_listing(description, root, json_path);
  add_cases(source, root / "imagesTr", root / "labelsTr", ending, true, false);
  const size_t training = source.cases.size();
  if (training == 0) {
    throw InputError((root / "imagesTr").string(), "",
                     str("holds no {case}_0000", ending, " files, expected the training images"));
  }
  if (description.contains("numTraining")) {
    const auto promised = description["numTraining"].get<size_t>();
    if (promised != training) {
      throw InputError(json_path, "numTraining",
                       str(promised, ", but imagesTr holds ", training,
                           " cases: files are missing or extra"));
    }
  }
  add_cases(source, root / "imagesTs", root / "labelsTs", ending, false, true);
  return source;
}

std::string h5_case_id(const fs::path& file) {
  std::string name = file.filename().string();
  for (const char* suffix : {".npy.h5", ".h5", ".hdf5"}) {
    if (ends_with(name, suffix)) return name.substr(0, name.size() - std::string(suffix).size());
  }
  return name;
}

SourceDataset discover_h5(const fs::path& input) {
  SourceDataset source;
  source.format = SourceFormat::kH5;
  source.root = input.string();
  std::vector<fs::path> files;
  if (fs::is_regular_file(input)) {
    files.push_back(input);
  } else {
    for (const auto& entry : fs::directory_iterator(input)) {
      const std::string name = entry.path().filename().string();
      if (name[0] != '.' && (ends_with(name, ".h5") || ends_with(name, ".hdf5"))) {
        files.push_back(entry.path());
      }
    }
  }
  if (files.empty()) throw InputError(input.string(), "", "holds no .h5 volume files");
  for (const fs::path& file : files) {
    // Whether a label dataset exists is decided when the file is opened.
    source.cases.push_back({h5_case_id(file), file.string(), file.string(), false});
  }
  return source;
}

}  // namespace

SourceDataset discover_source(const std::string& input, const std::string& format) {
  const fs::path root(input);
  if (!fs::exists(root)) throw InputError(input, "", "does not exist, expected --input to name it");
  SourceDataset source;
  if (format == "nnunet" || (format == "auto" && fs::exists(root / "dataset.json"))) {
    source = discover_nnunet(root);
  } else if (format == "h5" || format == "auto") {
    if (format == "auto" && fs::is_directory(root) && fs::exists(root / "imagesTr")) {
      throw InputError((root / "dataset.json").string(), "",
                       "is missing: imagesTr/ looks like an nnU-Net raw folder, which needs it");
    }
    source = discover_h5(root);
  } else {
    throw InputError("--format", "", str("'", format, "', expected auto, nnunet or h5"));
  }
  std::sort(source.cases.begin(), source.cases.end(),
            [](const SourceCase& a, const SourceCase& b) { return a.id < b.id; });
  return source;
}

}  // namespace cmaf::datastore
