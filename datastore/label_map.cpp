#include "datastore/label_map.h"

#include <map>
#include <sstream>

#include "common/error.h"
#include "datastore/volume_checks.h"

namespace cmaf::datastore {
namespace {

constexpr const char* kOption = "--label-map";

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) parts.push_back(part);
  return parts;
}

int parse_id(const std::string& text, const std::string& spec) {
  size_t used = 0;
  int value = -1;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 0 || value > 255) {
    throw InputError(kOption, "", str("'", spec, "': '", text, "' is not a class id 0..255"));
  }
  return value;
}

LabelMap explicit_map(const std::string& spec, const std::vector<std::string>& source_classes,
                      const std::string& class_names) {
  LabelMap map;
  map.spec = spec;
  map.target_of_source.assign(source_classes.size(), 0);
  int max_target = 0;
  for (const std::string& pair : split_commas(spec)) {
    const size_t colon = pair.find(':');
    if (colon == std::string::npos) {
      throw InputError(kOption, "", str("'", spec, "': '", pair, "' is not source:target"));
    }
    const int source = parse_id(pair.substr(0, colon), spec);
    const int target = parse_id(pair.substr(colon + 1), spec);
    if (source >= static_cast<int>(source_classes.size())) {
      throw InputError(kOption, "",
                       str("'", spec, "': source id ", source, " is not a declared class (0..",
                           source_classes.size() - 1, ")"));
    }
    map.target_of_source[static_cast<size_t>(source)] = target;
    max_target = std::max(max_target, target);
  }
  if (class_names.empty()) {
    map.classes.push_back("background");
    for (int t = 1; t <= max_target; ++t) map.classes.push_back(str("class_", t));
  } else {
    map.classes = split_commas(class_names);
    if (map.classes.size() != static_cast<size_t>(max_target) + 1) {
      throw InputError("--class-names", "",
                       str("has ", map.classes.size(), " names, expected ", max_target + 1,
                           " (background and ids 1..", max_target, " of ", kOption, ")"));
    }
  }
  return map;
}

}  // namespace

nlohmann::json LabelMap::to_json() const {
  return {{"spec", spec}, {"target_of_source", target_of_source}, {"classes", classes}};
}

LabelMap parse_label_map(const std::string& spec, const std::vector<std::string>& source_classes,
                         const std::string& class_names) {
  if (spec.empty() || spec == "none") {
    LabelMap map;
    map.spec = "none";
    for (size_t id = 0; id < source_classes.size(); ++id) {
      map.target_of_source.push_back(static_cast<int>(id));
    }
    map.classes = source_classes;
    if (!class_names.empty()) {
      map.classes = split_commas(class_names);
      if (map.classes.size() != source_classes.size()) {
        throw InputError("--class-names", "",
                         str("has ", map.classes.size(), " names, expected ",
                             source_classes.size(), " (one per source class, background first)"));
      }
    }
    return map;
  }
  if (spec == kBtcvToSynapse8) {
    if (source_classes.size() != 14) {
      throw InputError(kOption, "",
                       str(kBtcvToSynapse8, " expects the 13 BTCV organs plus background (14 "
                                            "classes), the source declares ",
                           source_classes.size()));
    }
    // Synapse ids: 1 aorta(8) 2 gallbladder(4) 3 left kidney(3) 4 right kidney(2) 5 liver(6)
    // 6 pancreas(11) 7 spleen(1) 8 stomach(7).
    LabelMap map = explicit_map("8:1,4:2,3:3,2:4,6:5,11:6,1:7,7:8", source_classes,
                                "background,aorta,gallbladder,left_kidney,right_kidney,liver,"
                                "pancreas,spleen,stomach");
    map.spec = kBtcvToSynapse8;
    return map;
  }
  return explicit_map(spec, source_classes, class_names);
}

std::vector<uint8_t> apply_label_map(const Volume<int32_t>& labels, const LabelMap& map,
                                     const std::string& path) {
  const auto declared = static_cast<int32_t>(map.target_of_source.size());
  std::vector<uint8_t> out(labels.voxels.size());
  std::map<int32_t, std::pair<int64_t, size_t>> undeclared;  // value -> (count, first index)
  for (size_t i = 0; i < labels.voxels.size(); ++i) {
    const int32_t v = labels.voxels[i];
    if (v < 0 || v >= declared) {
      auto [it, inserted] = undeclared.try_emplace(v, 0, i);
      ++it->second.first;
      continue;
    }
    out[i] = static_cast<uint8_t>(map.target_of_source[static_cast<size_t>(v)]);
  }
  if (!undeclared.empty()) {
    const auto& [value, where] = *undeclared.begin();
    throw InputError(path, "data",
                     str("label value ", value, " (", where.first, " voxels, first at ",
                         voxel_position(where.second, labels.geometry), ") is outside the declared classes 0..",
                         declared - 1, (undeclared.size() > 1
                                            ? str("; ", undeclared.size(), " undeclared values in all")
                                            : std::string())));
  }
  return out;
}

}  // namespace cmaf::datastore
