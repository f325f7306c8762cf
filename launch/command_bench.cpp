#include <iostream>

#include "cluster/process_runtime.h"
#include "common/error.h"
#include "core/allreduce_benchmark.h"
#include "launch/cli.h"
#include "launch/commands.h"

namespace cmaf::launch {

int run_bench(int argc, char** argv) {
  const CommandLine info{
      "bench", "cmaformer bench allreduce [--iterations I] [--max-mib M] [--preset P]  (under mpirun/srun)",
      "Benchmarks that check their own results. `allreduce`: float32 sum all-reduce from 1 KiB to\n"
      "--max-mib MiB on the world communicator (time, algbw, busbw = algbw * 2(n-1)/n, #wrong),\n"
      "then the bucketed reducer over one 25 MiB tensor and over the preset's gradients. Exit\n"
      "status 1 if any element was wrong. Run it under mpirun or srun (alone it measures 1 rank)."};
  std::string which;
  core::AllreduceBenchmarkOptions options;
  int threads = 1;
  po::options_description description("bench options");
  description.add_options()
      ("benchmark", po::value(&which), "which benchmark: allreduce")
      ("iterations", po::value(&options.iterations)->default_value(options.iterations), "timed repetitions per size")
      ("max-mib", po::value(&options.max_mib)->default_value(options.max_mib), "largest all-reduce, MiB")
      ("preset", po::value(&options.preset)->default_value(options.preset), "model whose gradients the reducer reduces")
      ("threads", po::value(&threads)->default_value(threads), "LibTorch threads per rank");
  po::positional_options_description positional;
  positional.add("benchmark", 1);
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, description, positional, values)) return 0;
  require(values, "benchmark", info);
  if (which != "allreduce") throw UsageError(str("cmaformer bench: unknown benchmark '", which, "', expected allreduce"));
  cluster::RuntimeOptions runtime_options;
  runtime_options.threads = threads;
  auto runtime = cluster::ProcessRuntime::start(&argc, &argv, runtime_options);
  int64_t wrong = 0;
  {
    auto world = runtime->world_communicator();
    wrong = core::run_allreduce_benchmark(*world, options);
  }
  runtime.reset();
  return wrong == 0 ? 0 : 1;
}

}  // namespace cmaf::launch
