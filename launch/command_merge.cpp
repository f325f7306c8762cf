#include <iostream>

#include "datastore/prep.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {

int run_merge(int argc, char** argv) {
  const CommandLine info{
      "merge", "cmaformer merge --out DIR PART [PART...]",
      "Joins the part datasets of a preprocessing job array (cmaformer prep --shard i/n) into one\n"
      "dataset (created, or appended to): the same cases, splits and files one prep run makes.\n"
      "Classes and per-site preprocessing must agree; any error leaves DIR as it was."};
  std::string out;
  std::vector<std::string> parts;
  po::options_description options("merge options");
  options.add_options()
      ("out", po::value(&out), "dataset folder to create or append to")
      ("part", po::value(&parts)->multitoken(), "part datasets (positional)");
  po::positional_options_description positional;
  positional.add("part", -1);
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, positional, values)) return 0;
  require(values, "out", info);
  require(values, "part", info);
  const int64_t merged = datastore::merge_datasets(parts, out);
  std::cout << "merged " << merged << " cases from " << parts.size() << " parts into " << out << "\n";
  return 0;
}

}  // namespace cmaf::launch
