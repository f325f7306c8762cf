#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cluster/process_runtime.h"
#include "common/error.h"
#include "core/evaluator.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/rank_errors.h"

namespace cmaf::launch {

int run_eval(int argc, char** argv) {
  const CommandLine info{
      "eval",
      "cmaformer eval --checkpoint CKPT --data DATASET [--split test] --out DIR [--flip-tta] [--recalibrate-bn] [--largest-component] [--save-predictions]\n"
      "       (alone, or under mpirun / srun --mpi=pmix: cases are spread over ranks)",
      "Whole-volume evaluation of a checkpoint (a RUN/checkpoints/step-N folder or a model.pt): per\n"
      "case and organ Dice, HD95, ASSD and volume difference at the scan's resolution, in the papers'\n"
      "convention and the correct one side by side. Writes DIR/metrics.json, metrics.csv, metrics.md\n"
      "and, with --save-predictions, DIR/predictions/<case>.nii.gz in the scan's geometry."};
  core::EvalOptions o;
  int threads = 0;
  double stall_seconds = 300.0;
  po::options_description options("eval options");
  options.add_options()
      ("checkpoint", po::value(&o.checkpoint), "checkpoint folder or weights file")
      ("data", po::value(&o.data), "dataset folder")
      ("split", po::value(&o.split)->default_value(o.split), "train, val or test")
      ("out", po::value(&o.out), "output folder")
      ("flip-tta", po::bool_switch(&o.flip_tta), "average with the left-right flipped prediction")
      ("recalibrate-bn", po::bool_switch(&o.recalibrate_bn), "re-estimate batch-norm statistics on the dataset's training slices (images only) before predicting")
      ("recalibrate-on", po::value(&o.recalibrate_on)->default_value(o.recalibrate_on), "with --recalibrate-bn: train (every training case's images) or labeled (the labeled training cases only, for a supervised baseline that must not see unlabeled scans)")
      ("save-predictions", po::bool_switch(&o.save_predictions), "write the predicted volumes as NIfTI")
      ("largest-component", po::bool_switch(&o.largest_component), "keep each organ's largest 3-D connected component (26-connectivity) of the prediction, the rest background, before scoring and saving")
      ("batch", po::value(&o.batch)->default_value(o.batch), "slices per forward")
      ("threads", po::value(&threads)->default_value(threads), "LibTorch threads per rank, 0 = allowed CPUs / local ranks sharing them")
      ("stall-seconds", po::value(&stall_seconds)->default_value(stall_seconds), "a collective waiting longer aborts the job (status 75); the ranks wait at the end for the one with the slowest cases up to 10 times this, so raise it for large volumes with --flip-tta on few ranks");
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, options, {}, values)) return 0;
  for (const char* required : {"checkpoint", "data", "out"}) require(values, required, info);
  if (!(stall_seconds >= 1.0 && stall_seconds <= 1e6)) {
    throw cmaf::InputError("--stall-seconds", "", cmaf::str(stall_seconds, ", expected 1 to 1000000 seconds"));
  }
  const std::chrono::milliseconds stall_limit(static_cast<int64_t>(stall_seconds * 1000.0));
  cluster::RuntimeOptions runtime_options;
  runtime_options.threads = threads;
  runtime_options.stall_limit = std::max<std::chrono::milliseconds>(stall_limit, std::chrono::minutes(1));
  auto runtime = cluster::ProcessRuntime::start(&argc, &argv, runtime_options);
  std::unique_ptr<cluster::Communicator> world;  // outside the work: see rank_errors.h
  return run_on_this_rank([&] {
    world = runtime->world_communicator(stall_limit);
    const int64_t scored = core::evaluate(o, *world);
    if (runtime->rank() == 0) {
      std::cout << "scored " << scored << " cases -> " << o.out << "/metrics.json\n";
      std::ifstream table(std::filesystem::path(o.out) / "metrics.md");
      std::cout << table.rdbuf();
    }
    return 0;
  });
}

}  // namespace cmaf::launch
