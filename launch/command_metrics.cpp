#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/error.h"
#include "core/label_sources.h"
#include "core/segmentation_metrics.h"
#include "datastore/manifest.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {
int run_metrics(int argc, char** argv) {
  const CommandLine info{
      "metrics",
      "cmaformer metrics --pred P --truth T [--classes 1,2,...] [--spacing z,y,x] [--class-names a,b,...] --out FILE.json",
      "Per-case, per-class Dice, HD95, ASSD and volume difference between two sets of label volumes,\n"
      "in the papers' convention (voxel units, TransUNet/SSL4MIS rules for empty masks) and the\n"
      "correct one (mm, undefined values excluded and counted), side by side. P and T: a NIfTI file,\n"
      "a folder of <case>.nii.gz files, or a dataset folder (the stored labels of its --split cases);\n"
      "cases are matched by id (two single files form a pair), and a truth case without a prediction\n"
      "is an error. Writes FILE.json, FILE.csv and FILE.md (the papers' table)."};
  std::string pred, truth, classes_text, spacing_text, names_text, out, split = "test";
  po::options_description options("metrics options");
  options.add_options()
      ("pred", po::value(&pred), "predicted labels: NIfTI file, folder, or dataset")
      ("truth", po::value(&truth), "reference labels: NIfTI file, folder, or dataset")
      ("classes", po::value(&classes_text), "label ids to score (default: every foreground id of the truth)")
      ("spacing", po::value(&spacing_text), "z,y,x mm, overriding the truth's header")
      ("split", po::value(&split)->default_value(split), "cases scored when the truth is a dataset")
      ("class-names", po::value(&names_text), "names for ids 0,1,2,... (default: the dataset's, or label_N)")
      ("out", po::value(&out), "output FILE.json (FILE.csv and FILE.md beside it)");
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, {}, values)) return 0;
  for (const char* required : {"pred", "truth", "out"}) require(values, required, info);
  if (std::filesystem::path(out).extension() != ".json") throw UsageError(str("--out '", out, "': expected a .json path"));
  const auto truth_sources = core::list_label_sources(truth, split);
  auto pred_sources = core::list_label_sources(pred, split);
  if (std::filesystem::is_regular_file(pred) && std::filesystem::is_regular_file(truth)) {
    pred_sources = {{truth_sources.begin()->first, pred}};  // two files: a pair, whatever their names
  }
  std::vector<std::string> missing;
  for (const auto& [id, where] : truth_sources) {
    if (pred_sources.count(id) == 0) missing.push_back(id);
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& id : missing) list += " " + id;
    throw InputError(pred, "cases", str("no prediction for", list, " (truth cases are matched by id)"));
  }
  std::vector<std::string> names;
  if (!names_text.empty()) {
    std::stringstream in(names_text);
    for (std::string item; std::getline(in, item, ',');) names.push_back(item);
  } else if (std::filesystem::is_directory(truth) && datastore::has_manifest(truth)) {
    names = datastore::load_manifest(truth).classes;
  }
  std::vector<int> labels;
  if (!classes_text.empty()) labels = parse_int_list(classes_text, "--classes");
  std::vector<core::CaseResult> results;
  std::vector<core::LabelVolume> pending;  // kept only while the default classes are unknown
  int max_label = static_cast<int>(names.size()) - 1;
  for (const auto& [id, where] : truth_sources) {
    core::LabelVolume t = core::read_label_source(truth, id, where);
    core::LabelVolume p = core::read_label_source(pred, id, pred_sources.at(id));
    if (p.geometry.shape != t.geometry.shape) {
      throw InputError(p.origin, "shape", str(p.geometry.shape_string(), ", the truth ", t.origin, " is ",
                                              t.geometry.shape_string()));
    }
    for (uint8_t v : t.labels) max_label = std::max(max_label, static_cast<int>(v));
    const std::array<double, 3> spacing = spacing_text.empty() ? t.geometry.spacing : parse_spacing(spacing_text);
    if (labels.empty()) {
      // Default classes need every truth volume's ids: score after the loop.
      pending.push_back(std::move(p));
      pending.push_back(std::move(t));
      pending.back().geometry.spacing = spacing;
      continue;
    }
    results.push_back({id, t.site, core::case_metrics(p.labels, t.labels, t.geometry.shape, spacing, labels)});
  }
  if (labels.empty()) {
    for (int c = 1; c <= max_label; ++c) labels.push_back(c);
    for (size_t i = 0; i < pending.size(); i += 2) {
      const core::LabelVolume& p = pending[i];
      const core::LabelVolume& t = pending[i + 1];
      results.push_back({t.case_id, t.site,
                         core::case_metrics(p.labels, t.labels, t.geometry.shape, t.geometry.spacing, labels)});
    }
  }
  if (names.empty()) {
    names.push_back("background");
    for (int c = 1; c <= max_label; ++c) names.push_back(str("label_", c));
  }
  core::write_metric_reports(out, results, names, {{"prediction", pred}, {"truth", truth}});
  std::cout << "scored " << results.size() << " cases x " << labels.size() << " classes -> " << out << "\n";
  const std::string md = std::filesystem::path(out).replace_extension(".md").string();
  std::ifstream table(md);
  std::cout << table.rdbuf();
  return 0;
}

}  // namespace cmaf::launch
