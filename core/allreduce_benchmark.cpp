#include "core/allreduce_benchmark.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cluster/cluster_error.h"
#include "cluster/gradient_reducer.h"
#include "cluster/parameter_sync.h"
#include "model/cmaformer.h"

namespace cmaf::core {
namespace {
using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// nccl-tests' all-reduce bus factor, 2(n-1)/n: 0 for one rank (nothing crosses a link).
double bus_factor(int n) { return 2.0 * (n - 1) / n; }

using cluster::Communicator;
using cluster::NamedTensor;

// The wrong elements of all ranks (rank 0 prints the lines; a rank's own count alone would hide
// a corruption that only another rank sees).
int64_t everyones(Communicator& c, int64_t wrong) {
  at::Tensor count = at::tensor({wrong}, at::kLong);
  c.all_reduce(count, cluster::ReduceOp::kSum);
  return count.item<int64_t>();
}

// One timed float32 sum of `t` (filled with rank + 1) on `c`; counts the wrong elements.
double timed_sum(Communicator& c, at::Tensor& t, int64_t* wrong) {
  const int n = c.size();
  t.fill_(c.rank() + 1.0);
  c.barrier();
  const auto start = Clock::now();
  c.all_reduce(t, cluster::ReduceOp::kSum);
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  if (wrong) *wrong += t.ne(n * (n + 1) / 2.0).sum().item<int64_t>();
  return s;
}

// `mpi`, when given, is the same world with every sum through MPI_Allreduce: its column is the
// reference the world's own transport (node shared memory) is measured against.
int64_t raw_sweep(Communicator& world, Communicator* mpi, int iterations, int64_t max_mib) {
  const int n = world.size();
  int64_t total_wrong = 0;
  if (world.rank() == 0) {
    std::printf("# %d ranks (%s%s); float32 sum; median of %d\n#%13s %12s %12s %12s %8s", n, world.name().c_str(),
                mpi ? ", node shared memory" : "", iterations, "bytes", "time (us)", "algbw GB/s", "busbw GB/s",
                "#wrong");
    if (mpi) std::printf(" %14s %14s", "MPI_Allreduce", "busbw GB/s");
    std::printf("\n");
  }
  std::vector<int64_t> sizes;
  for (int64_t bytes = 1024; bytes <= max_mib * (int64_t{1} << 20); bytes *= 4) sizes.push_back(bytes);
  sizes.push_back(int64_t{25} << 20);  // the default bucket size, for the reducer comparison
  std::sort(sizes.begin(), sizes.end());
  for (int64_t bytes : sizes) {
    at::Tensor t = at::empty({bytes / 4}, at::kFloat);
    std::vector<double> times, mpi_times;
    int64_t wrong = 0;
    for (int i = 0; i < iterations + 2; ++i) {  // the two transports alternate: the same machine state
      const double s = timed_sum(world, t, &wrong);
      const double m = mpi ? timed_sum(*mpi, t, &wrong) : 0.0;
      if (i < 2) continue;
      times.push_back(s);
      mpi_times.push_back(m);
    }
    const double m = median(times);
    const double algbw = static_cast<double>(bytes) / m / 1e9;
    wrong = everyones(world, wrong);
    total_wrong += wrong;
    if (world.rank() == 0) {
      std::printf("%14lld %12.1f %12.3f %12.3f %8lld", static_cast<long long>(bytes), m * 1e6, algbw,
                  algbw * bus_factor(n), static_cast<long long>(wrong));
      if (mpi) {
        const double mm = median(mpi_times);
        std::printf(" %12.1f us %14.3f", mm * 1e6, static_cast<double>(bytes) / mm / 1e9 * bus_factor(n));
      }
      std::printf("\n");
    }
  }
  return total_wrong;
}

// The bucketed reducer's cost beyond a backward that only produces constant gradients, and, in
// the same iterations (interleaved, so both see the same machine), a raw all-reduce of the same
// bytes: the ratio of the two is the reducer's overhead over the communicator itself.
int64_t reducer_cost(Communicator& world, Communicator* mpi, std::vector<NamedTensor>& parameters,
                     const std::string& label, int iterations, bool bf16_wire) {
  const int n = world.size();
  int64_t elements = 0;
  for (const auto& p : parameters) elements += p.tensor.numel();
  const at::ScalarType wire = bf16_wire ? at::kBFloat16 : at::kFloat;
  const int64_t bytes = elements * static_cast<int64_t>(at::elementSize(wire));
  // A copy without hooks for "backward alone", since the reducer's hooks stay on its parameters.
  std::vector<NamedTensor> plain;
  for (const auto& p : parameters) plain.push_back({p.name, p.tensor.detach().clone().requires_grad_()});
  auto backward = [&](std::vector<NamedTensor>& tensors, cluster::BucketedReducer* reducer) {
    for (auto& p : tensors) p.tensor.mutable_grad() = at::Tensor();
    world.barrier();
    const auto start = Clock::now();
    if (reducer) reducer->prepare_for_backward();
    at::Tensor loss = at::zeros({}, at::kFloat);
    for (const auto& p : tensors) loss = loss + p.tensor.sum() * (world.rank() + 1.0);
    loss.backward();
    if (reducer) reducer->finish();
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  at::Tensor flat = at::empty({elements}, at::TensorOptions().dtype(wire));
  auto raw = [&](Communicator& c) {
    flat.fill_(c.rank() + 1.0);
    c.barrier();
    const auto start = Clock::now();
    c.all_reduce(flat, cluster::ReduceOp::kSum);
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  if (bf16_wire) mpi = nullptr;  // bf16 goes through MPI_Allreduce on every transport
  cluster::BucketOptions options;
  options.bf16_wire = bf16_wire;
  cluster::BucketedReducer reducer(parameters, world, options);
  const double expected = (n + 1) / 2.0;  // mean of r + 1 over ranks
  // bf16: each share (r + 1) / n is rounded, and so is each partial sum.
  const double tolerance = bf16_wire ? expected * n * std::ldexp(1.0, -8) : 0.0;
  std::vector<double> with, without, raws, ratios, mpi_raws, mpi_ratios;
  int64_t wrong = 0;
  for (int i = 0; i < iterations + 1; ++i) {
    const double alone = backward(plain, nullptr);
    const double reduced = backward(parameters, &reducer);
    const double direct = raw(world);
    const double through_mpi = mpi ? raw(*mpi) : 0.0;
    for (const auto& p : parameters) {
      wrong += (p.tensor.grad() - expected).abs().gt(tolerance).sum().item<int64_t>();
    }
    if (i == 0) continue;  // warm-up
    without.push_back(alone);
    with.push_back(reduced);
    raws.push_back(direct);
    ratios.push_back((reduced - alone) / direct);
    if (mpi) {
      mpi_raws.push_back(through_mpi);
      mpi_ratios.push_back((reduced - alone) / through_mpi);
    }
  }
  const double cost = median(with) - median(without);
  wrong = everyones(world, wrong);
  if (world.rank() == 0) {
    std::printf("# bucketed reducer, %s%s: %zu tensors, %lld buckets, %lld bytes on the wire: %.1f ms beyond backward "
                "(backward alone %.1f ms), busbw %.3f GB/s; raw all-reduce of the same bytes %.1f ms, busbw %.3f GB/s; "
                "reducer / raw %.2f (median of per-iteration ratios), #wrong %lld\n",
                label.c_str(), bf16_wire ? ", bf16 wire" : "", parameters.size(),
                static_cast<long long>(reducer.bucket_count()), static_cast<long long>(bytes), cost * 1e3,
                median(without) * 1e3, bytes / cost / 1e9 * bus_factor(n), median(raws) * 1e3,
                bytes / median(raws) / 1e9 * bus_factor(n), median(ratios), static_cast<long long>(wrong));
    if (mpi) {
      std::printf("#   the same bytes through MPI_Allreduce: %.1f ms, busbw %.3f GB/s; reducer / MPI_Allreduce %.2f\n",
                  median(mpi_raws) * 1e3, bytes / median(mpi_raws) / 1e9 * bus_factor(n), median(mpi_ratios));
    }
  }
  return wrong;
}

// The preset's forward and backward on random slices (different on every rank), with the bucketed
// reducer: how much of the gradients' all-reduce backward hides. The wait in finish() after
// backward holds two things: communication not yet done, and, on a rank whose backward ended
// first, waiting for the others. The rank whose backward ended last waits for no one, so the
// smallest wait over the ranks is the exposed communication, and the largest minus it the
// ranks' skew. Alone: the same bytes all-reduced afterwards with nothing to overlap (in a buffer
// from new_buffer, where the reducer's buckets live). Wrong: ranks whose averaged gradients
// differ from rank 0's.
// Needs options.overlap_steps >= 1.
int64_t overlap(Communicator& world, const AllreduceBenchmarkOptions& options) {
  model::CmaformerConfig config = model::preset_config(options.preset);
  model::Cmaformer network(config);
  network->train();
  std::vector<NamedTensor> parameters;
  for (const auto& p : network->named_parameters()) parameters.push_back({p.key(), p.value()});
  std::vector<NamedTensor> state = parameters;
  for (const auto& b : network->named_buffers()) state.push_back({b.key(), b.value()});
  cluster::broadcast_tensors(state, world);
  cluster::BucketedReducer reducer(parameters, world);
  at::Generator generator = at::detail::createCPUGenerator(900 + static_cast<uint64_t>(world.rank()));
  const int64_t s = config.input_size;
  const at::Tensor x = at::randn({options.overlap_batch, 1, s, s}, generator);
  int64_t elements = 0;
  for (const auto& p : parameters) elements += p.tensor.numel();
  // Allocated once, as the reducer's buckets are (a fresh shared-memory segment per step would
  // time its first-touch page faults); summed as the reducer sums (each share already scaled).
  at::Tensor flat = world.new_buffer(elements, at::TensorOptions().dtype(at::kFloat));
  std::vector<double> backward, exposed, skew, alone;
  int64_t wrong = 0;
  for (int step = 0; step < options.overlap_steps + 1; ++step) {  // the first is a warm-up
    world.barrier();
    reducer.prepare_for_backward();
    const at::Tensor loss = network->forward(x).to(at::kFloat).square().mean();
    const auto start = Clock::now();
    loss.backward();
    const auto backward_done = Clock::now();
    reducer.finish();
    const auto reduced = Clock::now();
    std::vector<at::Tensor> grads;
    for (const auto& p : parameters) grads.push_back(p.tensor.grad().reshape({-1}));
    flat.copy_(at::cat(grads));
    world.barrier();
    const auto sum_start = Clock::now();
    world.all_reduce(flat, cluster::ReduceOp::kSum);
    const double sum_time = std::chrono::duration<double>(Clock::now() - sum_start).count();
    std::vector<NamedTensor> averaged;
    for (const auto& p : parameters) averaged.push_back({p.name, p.tensor.grad()});
    try {
      cluster::check_replicas_identical(averaged, world, "averaged gradients");
    } catch (const cluster::ClusterError& e) {
      if (world.rank() == 0) std::printf("# WRONG: %s\n", e.what());
      ++wrong;
    }
    const double wait = std::chrono::duration<double>(reduced - backward_done).count();
    const at::Tensor waits = world.all_gather(at::tensor({wait}, at::kDouble));
    if (step == 0) continue;
    backward.push_back(std::chrono::duration<double>(backward_done - start).count());
    exposed.push_back(waits.min().item<double>());
    skew.push_back(waits.max().item<double>() - exposed.back());
    alone.push_back(sum_time);
  }
  if (world.rank() == 0) {
    const double hidden = 1.0 - median(exposed) / median(alone);
    std::printf("# overlap, %s preset (%lld x %lld x %lld per rank, %lld buckets), median of %d steps: backward %.1f ms, "
                "all-reduce of its gradients alone %.1f ms, exposed after the last rank's backward %.1f ms "
                "(ranks' skew %.1f ms more): %.0f %% hidden, #wrong %lld\n",
                options.preset.c_str(), static_cast<long long>(options.overlap_batch), static_cast<long long>(s),
                static_cast<long long>(s), static_cast<long long>(reducer.bucket_count()), options.overlap_steps,
                median(backward) * 1e3, median(alone) * 1e3, median(exposed) * 1e3, median(skew) * 1e3,
                100.0 * std::max(0.0, hidden), static_cast<long long>(wrong));
  }
  return wrong;
}

}  // namespace

int64_t run_allreduce_benchmark(cluster::Communicator& world, const AllreduceBenchmarkOptions& options,
                                cluster::Communicator* mpi) {
  int64_t wrong = raw_sweep(world, mpi, options.iterations, options.max_mib);
  std::vector<NamedTensor> single{{"w", at::zeros({(int64_t{25} << 20) / 4}, at::kFloat).requires_grad_()}};
  wrong += reducer_cost(world, mpi, single, "one 25 MiB tensor", options.iterations, /*bf16_wire=*/false);
  model::Cmaformer network(model::preset_config(options.preset));
  std::vector<NamedTensor> parameters;
  for (const auto& p : network->named_parameters()) parameters.push_back({p.key(), p.value()});
  for (bool bf16 : {false, true}) {
    // A reducer per pass: each attaches its own hooks, so the parameters are fresh leaves each time.
    std::vector<NamedTensor> fresh;
    for (const auto& p : parameters) fresh.push_back({p.name, p.tensor.detach().clone().requires_grad_()});
    wrong += reducer_cost(world, mpi, fresh, options.preset + " preset gradients", options.iterations, bf16);
  }
  if (options.overlap_steps > 0) wrong += overlap(world, options);
  return wrong;
}

}  // namespace cmaf::core
