#include <iostream>

#include "datastore/synth.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {

int run_synth(int argc, char** argv) {
  const CommandLine info{
      "synth",
      "cmaformer synth --out DIR [--cases N --size S --slices D --classes K --sites M --seed X "
      "--labeled-cases L --test-cases T --val-cases V]",
      "Writes a deterministic synthetic abdominal phantom dataset: organs as smooth blobs of very\n"
      "different sizes (long-tailed class frequencies), per-site intensity and noise. Case i\n"
      "belongs to site i % M. Test and val cases are drawn first, then L labeled train cases;\n"
      "the other train cases are unlabeled (their label is kept for evaluation only)."};
  datastore::SynthOptions o;
  po::options_description options("synth options");
  options.add_options()
      ("out", po::value(&o.out), "output dataset folder (new, or holding this same dataset)")
      ("cases", po::value(&o.cases)->default_value(o.cases), "number of cases")
      ("size", po::value(&o.phantom.size)->default_value(o.phantom.size), "in-plane size H = W")
      ("slices", po::value(&o.phantom.slices)->default_value(o.phantom.slices), "slices per case (D)")
      ("classes", po::value(&o.phantom.classes)->default_value(o.phantom.classes),
       "foreground organs K (label ids 0..K)")
      ("sites", po::value(&o.sites)->default_value(o.sites), "number of sites (institutions)")
      ("seed", po::value(&o.seed)->default_value(o.seed), "random seed")
      ("labeled-cases", po::value(&o.labeled_cases), "labeled train cases: a count or ids (default all)")
      ("test-cases", po::value(&o.test_cases), "test cases: a count or ids (default none)")
      ("val-cases", po::value(&o.val_cases), "validation cases: a count or ids (default none)");
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, {}, values)) return 0;
  require(values, "out", info);
  const datastore::SynthReport report = datastore::run_synth(o);
  std::cout << (report.already_present ? "unchanged: " : "wrote ") << o.out << ": "
            << report.cases << " cases, " << report.slices << " slices";
  if (!report.already_present) std::cout << " in " << report.seconds << " s";
  std::cout << "\n";
  return 0;
}

}  // namespace cmaf::launch
