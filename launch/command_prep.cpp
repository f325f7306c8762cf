#include <iostream>
#include <tuple>

#include "common/error.h"
#include "datastore/prep.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {
int run_prep(int argc, char** argv) {
  const CommandLine info{
      "prep",
      "cmaformer prep --input PATH --out DIR [--site NAME] [--label-map MAP] [split options]",
      "Reads real scans and writes (or appends to) a dataset of HDF5 case files.\n"
      "Inputs: an nnU-Net raw folder (dataset.json, imagesTr/, labelsTr/, optional imagesTs/)\n"
      "or HDF5 volumes with datasets image/label (a file or a folder of them).\n"
      "Every header is checked before anything is written; on any error the output folder is\n"
      "left as it was. Several runs with different --site append sites into one dataset.\n"
      "Example (BTCV to the Synapse 8 organs, 6 test cases, 2 labeled train cases):\n"
      "  cmaformer prep --input ../shared/data/btcv --out data/synapse8 \\\n"
      "    --label-map btcv13-to-synapse8 --test-cases 6 --labeled-cases 2 --seed 1"};
  datastore::PrepOptions o;
  std::string test_cases, val_cases, labeled_cases, spacing, shard;
  double labeled_fraction = -1.0;
  uint64_t seed = 0;
  po::options_description options("prep options");
  options.add_options()
      ("input", po::value(&o.input), "nnU-Net raw folder, or an HDF5 volume file or folder")
      ("out", po::value(&o.out), "dataset folder (created, or appended to)")
      ("format", po::value(&o.format)->default_value(o.format), "auto | nnunet | h5")
      ("site", po::value(&o.site)->default_value(o.site), "site (institution) tag of these cases")
      ("case-prefix", po::value(&o.case_prefix), "prefix added to case ids (avoid collisions across sites)")
      ("normalization", po::value(&o.normalization)->default_value(o.normalization),
       "auto | ct-window | mr-percentile | none (auto: from dataset.json's modality; h5: none)")
      ("window", po::value(&o.window), "CT window low,high in HU (default -125,275)")
      ("percentiles", po::value(&o.percentiles), "MR percentiles low,high (default 0.5,99.5)")
      ("label-map", po::value(&o.label_map)->default_value(o.label_map),
       "none | btcv13-to-synapse8 | src:dst,src:dst,... (unlisted ids become 0)")
      ("class-names", po::value(&o.class_names), "names of the dataset's classes, background first")
      ("source-classes", po::value(&o.source_classes), "h5 inputs: number of label ids incl. background")
      ("spacing", po::value(&spacing), "h5 inputs without a spacing attribute: z,y,x in mm (default 1,1,1)")
      ("images-ts", po::value(&o.images_ts)->default_value(o.images_ts),
       "nnU-Net imagesTs cases: test | unlabeled (train) | skip")
      ("test-cases", po::value(&test_cases), "test cases: a count (drawn with --seed) or ids")
      ("val-cases", po::value(&val_cases), "validation cases: a count or ids")
      ("labeled-cases", po::value(&labeled_cases), "labeled train cases: a count or ids (default all)")
      ("labeled-fraction", po::value(&labeled_fraction), "labeled share of train cases, instead of --labeled-cases")
      ("seed", po::value(&seed)->default_value(seed), "seed for drawn splits")
      ("shard", po::value(&shard), "job arrays: i/n converts every n-th case from the i-th into a part dataset "
                                   "(splits planned over all cases); join the parts with cmaformer merge");
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, {}, values)) return 0;
  require(values, "input", info);
  require(values, "out", info);
  o.splits.seed = seed;
  o.splits.test = datastore::parse_case_selection(test_cases, "--test-cases");
  o.splits.val = datastore::parse_case_selection(val_cases, "--val-cases");
  o.splits.labeled = datastore::parse_case_selection(labeled_cases, "--labeled-cases");
  if (values.count("labeled-fraction") > 0) o.splits.labeled_fraction = labeled_fraction;
  if (!spacing.empty()) o.spacing = parse_spacing(spacing);
  if (!shard.empty()) std::tie(o.shard_index, o.shard_count) = datastore::parse_shard(shard, "--shard");

  const datastore::PrepReport r = datastore::run_prep(o);
  const double mb = static_cast<double>(r.bytes_read) / 1e6;
  std::cout << "wrote " << r.cases << " cases (" << r.slices << " slices) to " << o.out << " in "
            << r.seconds << " s: " << mb / r.seconds << " MB/s of input ("
            << static_cast<double>(r.voxels) * 4e-6 / r.seconds << " MB/s of float32 voxels), "
            << static_cast<double>(r.slices) / r.seconds << " slices/s; case files "
            << static_cast<double>(r.bytes_written) / 1e6 << " MB\n";
  if (r.constant_slices > 0) {
    std::cout << r.constant_slices << " slice(s) hold a single value (blank or padded parts of a series): see the "
              << "warnings above\n";
  }
  return 0;
}

}  // namespace cmaf::launch
