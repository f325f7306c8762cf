#include "datastore/synth.h"

#include <glog/logging.h>

#include <chrono>
#include <filesystem>

#include "common/error.h"
#include "datastore/case_file.h"
#include "datastore/dataset_writer.h"
#include "datastore/split_plan.h"

namespace cmaf::datastore {
namespace fs = std::filesystem;

namespace {

nlohmann::json generator_json(const SynthOptions& o) {
  return {{"tool", "cmaformer synth"},
          {"cases", o.cases},
          {"size", o.phantom.size},
          {"slices", o.phantom.slices},
          {"classes", o.phantom.classes},
          {"sites", o.sites},
          {"seed", o.seed},
          {"test_cases", o.test_cases},
          {"val_cases", o.val_cases},
          {"labeled_cases", o.labeled_cases}};
}

void check_options(const SynthOptions& o) {
  if (o.cases < 1) throw InputError("--cases", "", str(o.cases, ", expected >= 1"));
  if (o.sites < 1 || o.sites > o.cases) {
    throw InputError("--sites", "", str(o.sites, ", expected 1..--cases (", o.cases, ")"));
  }
  if (o.phantom.size < 32 || o.phantom.size > 1024) {
    throw InputError("--size", "", str(o.phantom.size, ", expected 32..1024"));
  }
  if (o.phantom.slices < 1 || o.phantom.slices > 2048) {
    throw InputError("--slices", "", str(o.phantom.slices, ", expected 1..2048"));
  }
  if (o.phantom.classes < 1 || o.phantom.classes > 32) {
    throw InputError("--classes", "", str(o.phantom.classes, ", expected 1..32 foreground organs"));
  }
}

std::string case_id(int index) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "synth_%04d", index);
  return buffer;
}

std::string site_name(int site) { return str("site", site); }

// Same generator parameters already there: verify every file opens and matches its entry.
SynthReport verify_existing(const SynthOptions& o, const DatasetManifest& manifest) {
  SynthReport report;
  report.already_present = true;
  for (const ManifestCase& c : manifest.cases) {
    const CaseFile file((fs::path(o.out) / c.file).string());
    if (file.metadata().geometry.shape != c.shape) {
      throw InputError(file.path(), "dataset 'image'",
                       str("shape ", file.metadata().geometry.shape_string(),
                           " differs from the manifest; remove the folder and run synth again"));
    }
    report.cases += 1;
    report.slices += c.slices();
  }
  return report;
}

}  // namespace

SynthReport run_synth(const SynthOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  check_options(o);
  std::vector<std::string> classes{"background"};
  for (int k = 1; k <= o.phantom.classes; ++k) classes.push_back(str("organ_", k));

  const nlohmann::json generator = generator_json(o);
  if (has_manifest(o.out)) {
    const DatasetManifest existing = load_manifest(o.out);
    if (existing.generator != generator) {
      throw InputError(manifest_path(o.out), "generator",
                       str("this folder already holds a different dataset (",
                           existing.generator.is_null() ? std::string("not synthetic")
                                                        : existing.generator.dump(),
                           "); choose another --out or remove it"));
    }
    SynthReport report = verify_existing(o, existing);
    LOG(INFO) << "synth: " << o.out << " already holds this dataset (" << report.cases
              << " cases); nothing to do";
    return report;
  }

  std::vector<std::string> ids;
  for (int i = 0; i < o.cases; ++i) ids.push_back(case_id(i));
  SplitRequest request;
  request.seed = o.seed;
  request.test = parse_case_selection(o.test_cases, "--test-cases");
  request.val = parse_case_selection(o.val_cases, "--val-cases");
  request.labeled = parse_case_selection(o.labeled_cases, "--labeled-cases");
  const auto plan = plan_splits(ids, request);

  DatasetWriter writer(o.out, classes);
  writer.set_generator(generator);
  const nlohmann::json preprocessing = {{"intensity", {{"kind", "ct-window"}, {"window_hu", {-125, 275}}}},
                                        {"source_format", "synthetic"}};
  for (int s = 0; s < o.sites; ++s) {
    writer.add_site({site_name(s), "cmaformer synth", preprocessing, utc_timestamp()});
  }
  SynthReport report;
  for (int i = 0; i < o.cases; ++i) {
    const int site = i % o.sites;
    PhantomCase phantom = generate_phantom_case(o.phantom, o.seed, i, site);
    const CaseAssignment& assignment = plan.at(ids[static_cast<size_t>(i)]);
    CaseMetadata metadata;
    metadata.case_id = ids[static_cast<size_t>(i)];
    metadata.site = site_name(site);
    metadata.geometry = phantom.geometry;
    metadata.source_image = str("synthetic phantom ", i, " (seed ", o.seed, ")");
    metadata.preprocessing = preprocessing.dump();
    metadata.label_role = assignment.labeled ? LabelRole::kSupervision : LabelRole::kEvaluationOnly;
    writer.add_case(metadata, phantom.image, phantom.label, assignment.split);
    report.cases += 1;
    report.slices += phantom.geometry.shape[0];
  }
  writer.commit();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace cmaf::datastore
