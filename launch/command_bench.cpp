#include <cstdio>
#include <iostream>

#include "cluster/mpi_communicator.h"
#include "cluster/process_runtime.h"
#include "common/error.h"
#include "core/allreduce_benchmark.h"
#include "core/loader_benchmark.h"
#include "launch/cli.h"
#include "launch/commands.h"
#include "launch/rank_errors.h"
#include "model/model_config.h"

namespace cmaf::launch {

int run_bench(int argc, char** argv) {
  const CommandLine info{
      "bench",
      "cmaformer bench allreduce [--iterations I] [--max-mib M] [--preset P] [--overlap-steps N]\n"
      "                          [--overlap-batch B]  (under mpirun/srun)\n"
      "       cmaformer bench loader --data DIR [--preset P] [--reader-threads 1,2] [--steps N]",
      "Benchmarks that check their own results. `allreduce`: float32 sum all-reduce from 1 KiB to\n"
      "--max-mib MiB on the world communicator (time, algbw, busbw = algbw * 2(n-1)/n, #wrong),\n"
      "then the bucketed reducer over one 25 MiB tensor and over the preset's gradients, then the\n"
      "overlap: the preset's forward and backward with the reducer, and the share of the gradients'\n"
      "all-reduce time hidden behind backward. When the\n"
      "sums go through node shared memory, MPI_Allreduce is timed beside them, alternating. Run it\n"
      "under mpirun or srun (alone it measures 1 rank).\n"
      "`loader`: slices/s from HDF5 through augmentation into batches per reader-thread count\n"
      "(cache off and on), then the training step time with a live loader divided by the step on\n"
      "the same batches held in memory (target <= 1.03). One process.\n"
      "Exit status 1 if any result was wrong."};
  std::string which;
  core::AllreduceBenchmarkOptions options;
  int threads = 1;
  core::LoaderBenchmarkOptions loader;
  std::string reader_threads = "1,2";
  po::options_description description("bench options");
  description.add_options()
      ("benchmark", po::value(&which), "which benchmark: allreduce, loader")
      ("iterations", po::value(&options.iterations)->default_value(options.iterations), "timed repetitions per size")
      ("max-mib", po::value(&options.max_mib)->default_value(options.max_mib), "largest all-reduce, MiB")
      ("preset", po::value(&options.preset)->default_value(options.preset), "model whose gradients the reducer reduces")
      ("overlap-steps", po::value(&options.overlap_steps)->default_value(options.overlap_steps), "allreduce: timed training steps of the overlap figure, 0 = skip")
      ("overlap-batch", po::value(&options.overlap_batch)->default_value(options.overlap_batch), "allreduce: slices per rank and step of the overlap figure")
      ("threads", po::value(&threads)->default_value(threads), "LibTorch threads per rank")
      ("data", po::value(&loader.data), "loader: dataset folder")
      ("input-size", po::value(&loader.input_size)->default_value(loader.input_size), "loader: input size, 0 = preset's")
      ("labeled-batch", po::value(&loader.labeled_batch)->default_value(loader.labeled_batch), "loader: labeled slices per step")
      ("unlabeled-batch", po::value(&loader.unlabeled_batch)->default_value(loader.unlabeled_batch), "loader: unlabeled slices per step")
      ("reader-threads", po::value(&reader_threads)->default_value(reader_threads), "loader: reader thread counts to measure")
      ("steps", po::value(&loader.throughput_steps)->default_value(loader.throughput_steps), "loader: steps per throughput window")
      ("train-steps", po::value(&loader.train_steps)->default_value(loader.train_steps), "loader: timed training steps per pass")
      ("loader-threads", po::value(&loader.loader_threads)->default_value(loader.loader_threads), "loader: reader threads while training")
      ("seed", po::value(&loader.seed)->default_value(loader.seed), "loader: seed");
  po::positional_options_description positional;
  positional.add("benchmark", 1);
  po::variables_map values;
  if (!parse_command_line(info, argc, argv, description, positional, values)) return 0;
  require(values, "benchmark", info);
  if (which == "loader") {
    require(values, "data", info);
    loader.preset = values["preset"].defaulted() ? "quarter" : options.preset;
    loader.torch_threads = values["threads"].defaulted() ? 2 : threads;
    loader.reader_threads = parse_int_list(reader_threads, "--reader-threads");
    return core::run_loader_benchmark(loader) == 0 ? 0 : 1;
  }
  if (which != "allreduce") {
    throw UsageError(str("cmaformer bench: unknown benchmark '", which, "', expected allreduce or loader"));
  }
  if (options.iterations < 1) throw UsageError(str("cmaformer bench allreduce: --iterations ", options.iterations, ", expected >= 1"));
  if (options.max_mib < 1 || options.max_mib > 4096) {
    throw UsageError(str("cmaformer bench allreduce: --max-mib ", options.max_mib, ", expected 1 to 4096"));
  }
  if (options.overlap_steps < 0) {
    throw UsageError(str("cmaformer bench allreduce: --overlap-steps ", options.overlap_steps, ", expected >= 0 (0 skips)"));
  }
  if (options.overlap_batch < 1) {
    throw UsageError(str("cmaformer bench allreduce: --overlap-batch ", options.overlap_batch, ", expected >= 1"));
  }
  model::preset_config(options.preset);  // an unknown preset is refused before MPI starts
  cluster::RuntimeOptions runtime_options;
  runtime_options.threads = threads;
  auto runtime = cluster::ProcessRuntime::start(&argc, &argv, runtime_options);
  std::unique_ptr<cluster::Communicator> world;  // outside the work: see rank_errors.h
  std::unique_ptr<cluster::Communicator> mpi_only;
  return run_on_this_rank([&] {
    world = runtime->world_communicator();
    // When the world sums through node shared memory, MPI_Allreduce is measured beside it.
    const auto* mpi_world = dynamic_cast<const cluster::MpiCommunicator*>(world.get());
    if (mpi_world && mpi_world->node_shared_memory()) mpi_only = runtime->world_communicator({}, false);
    if (mpi_world && mpi_world->rank() == 0) {
      std::printf("# %d ranks on %d node%s; float sums: %s\n", mpi_world->size(), mpi_world->nodes(),
                  mpi_world->nodes() == 1 ? "" : "s",
                  !mpi_world->node_shared_memory() ? "MPI_Allreduce"
                  : mpi_world->nodes() == 1        ? "node shared memory"
                                                   : "node shared memory, then MPI_Allreduce between nodes");
    }
    return core::run_allreduce_benchmark(*world, options, mpi_only.get()) == 0 ? 0 : 1;
  });
}

}  // namespace cmaf::launch
