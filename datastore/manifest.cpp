#include "datastore/manifest.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "common/atomic_file.h"
#include "common/error.h"

namespace cmaf::datastore {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Typed access to a JSON object's member with messages naming file and JSON path.
class Reader {
 public:
  Reader(const json& object, std::string origin, std::string where)
      : object_(object), origin_(std::move(origin)), where_(std::move(where)) {
    if (!object_.is_object()) fail("", "expected a JSON object");
  }

  template <typename T>
  T get(const std::string& key) const {
    const json& value = member(key);
    try {
      return value.get<T>();
    } catch (const json::exception&) {
      fail(key, str("has the wrong type (", value.type_name(), ")"));
    }
  }

  const json& member(const std::string& key) const {
    auto it = object_.find(key);
    if (it == object_.end()) fail(key, "is missing");
    return *it;
  }

  bool has(const std::string& key) const { return object_.contains(key); }

  [[noreturn]] void fail(const std::string& key, const std::string& detail) const {
    std::string field = where_;
    if (!key.empty()) field += (field.empty() ? "" : ".") + key;
    throw InputError(origin_, field, detail);
  }

 private:
  const json& object_;
  std::string origin_;
  std::string where_;
};

ManifestCase case_from_json(const json& object, const std::string& origin, size_t index,
                            size_t class_count) {
  const Reader r(object, origin, str("cases[", index, "]"));
  ManifestCase c;
  c.id = r.get<std::string>("id");
  c.file = r.get<std::string>("file");
  c.site = r.get<std::string>("site");
  c.split = split_from_string(r.get<std::string>("split"), str(origin, ": cases[", index, "].split"));
  c.labeled = r.get<bool>("labeled");
  c.has_label = r.get<bool>("has_label");
  c.shape = r.get<std::array<int64_t, 3>>("shape");
  c.spacing = r.get<std::array<double, 3>>("spacing");
  c.class_voxels = r.get<std::vector<int64_t>>("class_voxels");
  c.class_slices = r.get<std::vector<int64_t>>("class_slices");
  c.source = r.get<std::string>("source");
  if (c.id.empty()) r.fail("id", "is empty");
  for (int64_t extent : c.shape) {
    if (extent < 1) r.fail("shape", "expected three sizes >= 1");
  }
  if (c.labeled && (!c.has_label || c.split != Split::kTrain)) {
    r.fail("labeled", "is true, expected only for train cases with has_label true");
  }
  const size_t expected = c.has_label ? class_count : 0;
  if (c.class_voxels.size() != expected || c.class_slices.size() != expected) {
    r.fail("class_voxels", str("has ", c.class_voxels.size(), " entries, expected ", expected));
  }
  return c;
}

}  // namespace

std::string to_string(Split split) {
  switch (split) {
    case Split::kTrain: return "train";
    case Split::kVal: return "val";
    case Split::kTest: return "test";
  }
  return "train";
}

Split split_from_string(const std::string& text, const std::string& where) {
  if (text == "train") return Split::kTrain;
  if (text == "val") return Split::kVal;
  if (text == "test") return Split::kTest;
  throw InputError(where, "", str("split '", text, "', expected train, val or test"));
}

const ManifestCase* DatasetManifest::find_case(const std::string& id) const {
  for (const ManifestCase& c : cases) {
    if (c.id == id) return &c;
  }
  return nullptr;
}

const SiteRecord* DatasetManifest::find_site(const std::string& name) const {
  for (const SiteRecord& s : sites) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string manifest_path(const std::string& dataset_dir) {
  return (fs::path(dataset_dir) / kManifestFileName).string();
}

bool has_manifest(const std::string& dataset_dir) { return fs::exists(manifest_path(dataset_dir)); }

json to_json(const DatasetManifest& m) {
  json cases = json::array();
  for (const ManifestCase& c : m.cases) {
    cases.push_back({{"id", c.id},
                     {"file", c.file},
                     {"site", c.site},
                     {"split", to_string(c.split)},
                     {"labeled", c.labeled},
                     {"has_label", c.has_label},
                     {"slices", c.slices()},
                     {"shape", c.shape},
                     {"spacing", c.spacing},
                     {"class_voxels", c.class_voxels},
                     {"class_slices", c.class_slices},
                     {"source", c.source}});
  }
  json sites = json::array();
  for (const SiteRecord& s : m.sites) {
    sites.push_back({{"name", s.name},
                     {"source", s.source},
                     {"preprocessing", s.preprocessing},
                     {"created", s.created}});
  }
  return {{"format", kManifestFormat},
          {"format_version", m.format_version},
          {"classes", m.classes},
          {"sites", sites},
          {"generator", m.generator},
          {"cases", cases}};
}

DatasetManifest manifest_from_json(const json& object, const std::string& origin) {
  const Reader r(object, origin, "");
  if (r.get<std::string>("format") != kManifestFormat) {
    r.fail("format", str("expected \"", kManifestFormat, "\""));
  }
  DatasetManifest m;
  m.format_version = r.get<int>("format_version");
  if (m.format_version < 1 || m.format_version > kManifestFormatVersion) {
    r.fail("format_version", str(m.format_version, ", expected 1..", kManifestFormatVersion));
  }
  m.classes = r.get<std::vector<std::string>>("classes");
  if (m.classes.size() < 2 || m.classes.size() > 256) {
    r.fail("classes", str("has ", m.classes.size(), " names, expected 2..256 (background first)"));
  }
  const json& sites = r.member("sites");
  if (!sites.is_array()) r.fail("sites", "expected an array");
  for (size_t i = 0; i < sites.size(); ++i) {
    const Reader s(sites[i], origin, str("sites[", i, "]"));
    m.sites.push_back({s.get<std::string>("name"), s.get<std::string>("source"),
                       s.member("preprocessing"), s.get<std::string>("created")});
  }
  m.generator = r.member("generator");
  const json& cases = r.member("cases");
  if (!cases.is_array()) r.fail("cases", "expected an array");
  std::set<std::string> ids;
  for (size_t i = 0; i < cases.size(); ++i) {
    ManifestCase c = case_from_json(cases[i], origin, i, m.classes.size());
    if (!ids.insert(c.id).second) r.fail(str("cases[", i, "].id"), str("'", c.id, "' appears twice"));
    if (m.find_site(c.site) == nullptr) {
      r.fail(str("cases[", i, "].site"), str("'", c.site, "' is not listed in sites"));
    }
    m.cases.push_back(std::move(c));
  }
  return m;
}

DatasetManifest load_manifest(const std::string& dataset_dir) {
  const std::string path = manifest_path(dataset_dir);
  std::ifstream in(path);
  if (!in) {
    throw InputError(path, "", "cannot be opened: is this folder a cmaformer dataset "
                               "(made by `cmaformer prep` or `cmaformer synth`)?");
  }
  json object;
  try {
    object = json::parse(in);
  } catch (const json::parse_error& e) {
    throw InputError(path, "", str("is not valid JSON (", e.what(), ")"));
  }
  return manifest_from_json(object, path);
}

void save_manifest(const std::string& dataset_dir, const DatasetManifest& manifest) {
  write_file_atomically(manifest_path(dataset_dir), to_json(manifest).dump(2) + "\n");
}

}  // namespace cmaf::datastore
