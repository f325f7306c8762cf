#include <iostream>

#include "common/atomic_file.h"
#include "datastore/inspect.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {

int run_inspect(int argc, char** argv) {
  const CommandLine info{
      "inspect", "cmaformer inspect DIR [--verify-data] [--verify-sources] [--json FILE]",
      "Summarises a dataset (cases per split and site, labeled/unlabeled, slices, class\n"
      "frequencies) and checks every case file against the manifest. Exit status 1 when a\n"
      "problem is found. --verify-data also reads every voxel (finite intensities, label ids,\n"
      "class counts); --verify-sources re-reads each label from its source scan and compares\n"
      "slice and per-class voxel counts with the manifest."};
  std::string dir, json_path;
  datastore::InspectOptions inspect;
  po::options_description options("inspect options");
  options.add_options()
      ("dir", po::value(&dir), "dataset folder (also the first positional argument)")
      ("verify-data", po::bool_switch(&inspect.verify_data), "read and check every voxel")
      ("verify-sources", po::bool_switch(&inspect.verify_sources),
       "recount labels from the source scans and compare with the manifest")
      ("json", po::value(&json_path), "also write the report as JSON to this file");
  po::positional_options_description positional;
  positional.add("dir", 1);
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, positional, values)) return 0;
  require(values, "dir", info);
  const datastore::InspectReport report = datastore::inspect_dataset(dir, inspect);
  std::cout << report.to_text();
  if (!json_path.empty()) write_file_atomically(json_path, report.to_json().dump(2) + "\n");
  return report.problems.empty() ? 0 : 1;
}

}  // namespace cmaf::launch
