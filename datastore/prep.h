// `cmaformer prep`: real scans (nnU-Net raw folder or HDF5 volumes) to a dataset.
//
// Order of work: discover and validate every input header (nothing written yet), plan the
// splits, open the output (refusing a different dataset), then convert case by case, and
// publish the manifest last. Any error leaves the output folder as it was before the run.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "datastore/intensity.h"
#include "datastore/split_plan.h"

namespace cmaf::datastore {

struct PrepOptions {
  std::string input;
  std::string out;
  std::string format = "auto";           // auto | nnunet | h5
  std::string site = "default";
  std::string case_prefix;
  std::string normalization = "auto";    // auto | ct-window | mr-percentile | none
  std::string window;                    // "low,high" HU for ct-window (default -125,275)
  std::string percentiles;               // "low,high" for mr-percentile (default 0.5,99.5)
  std::string label_map = "none";        // none | btcv13-to-synapse8 | "src:dst,..."
  std::string class_names;               // names of the dataset's classes, comma-separated
  int source_classes = 0;                // h5 inputs: number of class ids (incl. background)
  std::array<double, 3> spacing{1, 1, 1};  // h5 inputs without a spacing attribute (z, y, x)
  std::string images_ts = "test";        // test | unlabeled | skip (nnU-Net imagesTs)
  SplitRequest splits;
  // Job arrays: convert only the cases whose index (in the source's sorted order) is
  // shard_index modulo shard_count, after the splits of ALL cases are planned, into a part
  // dataset; merge_datasets() joins the parts into the dataset one run would have made.
  int shard_index = 0;
  int shard_count = 1;
};

struct PrepReport {
  int64_t cases = 0;
  int64_t slices = 0;
  int64_t voxels = 0;
  int64_t bytes_read = 0;     // compressed input bytes
  int64_t bytes_written = 0;  // case files
  int64_t constant_slices = 0;  // slices holding one value (warned about per case)
  double seconds = 0.0;
};

PrepReport run_prep(const PrepOptions& options);

// "i/n" -> (i, n) with 0 <= i < n. Throws UsageError naming `option` otherwise.
std::pair<int, int> parse_shard(const std::string& text, const std::string& option);

// Joins part datasets (prep --shard outputs) into `out` (created, or appended to): classes and
// per-site preprocessing must agree; case files are copied and the manifest is rebuilt, all under
// the dataset lock and rolled back on any error. Returns the number of cases merged.
int64_t merge_datasets(const std::vector<std::string>& parts, const std::string& out);

}  // namespace cmaf::datastore
