#include <glog/logging.h>

#include <cstring>
#include <iostream>

#include "cmaf/config.h"
#include "common/error.h"
#include "common/heap_policy.h"
#include "common/test_delay.h"
#include "launch/commands.h"
#include "launch/rank_errors.h"

namespace cmaf::launch {
namespace {

void print_usage(std::ostream& out) {
  out << "usage: cmaformer <command> [options]   (cmaformer <command> --help for its options)\n\n"
         "commands:\n";
  for (const Command& c : commands()) {
    out << "  " << c.name << std::string(12 - std::strlen(c.name), ' ') << c.summary << "\n";
  }
}

}  // namespace

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"synth", "write a synthetic phantom dataset (the embedded default data)", run_synth},
      {"prep", "turn real scans (nnU-Net raw folder, HDF5 volumes) into a dataset", run_prep},
      {"merge", "join the part datasets of a prep job array (prep --shard i/n)", run_merge},
      {"inspect", "summarise a dataset and check every file", run_inspect},
      {"model-info", "parameters, FLOPs, activation memory of a CMAformer preset", run_model_info},
      {"train", "semi-supervised data-parallel training (alone or under mpirun/srun)", run_train},
      {"plot", "PNG curves and prediction overlays of a training run (gnuplot)", run_plot},
      {"eval", "whole-volume Dice and HD95 of a checkpoint on a split (alone or under mpirun)", run_eval},
      {"infer", "segment new NIfTI scans with a checkpoint", run_infer},
      {"metrics", "Dice, HD95, ASSD of label volumes against a reference, both conventions", run_metrics},
      {"bench", "benchmarks that check their results (allreduce; run under mpirun)", run_bench},
      {"env", "print versions, threading and the measured BLAS speed", run_env},
  };
  return table;
}

int main_entry(int argc, char** argv) {
  keep_freed_memory_in_the_heap();  // first: before anything allocates large buffers
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    print_usage(std::cout);
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "--version") == 0) {
    std::cout << "cmaformer " << CMAF_VERSION << "\n";
    return 0;
  }
  for (const Command& command : commands()) {
    if (std::strcmp(argv[1], command.name) != 0) continue;
    try {
      check_test_delays();  // the tests' fault injection, refused now rather than mid-save
      return command.run(argc - 1, argv + 1);
    } catch (const std::exception&) {
      return print_error(std::current_exception());
    }
  }
  std::cerr << "usage error: unknown command '" << argv[1] << "'\n";
  print_usage(std::cerr);
  return 2;
}

}  // namespace cmaf::launch
