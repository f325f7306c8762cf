#include "core/allreduce_benchmark.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cluster/gradient_reducer.h"
#include "model/cmaformer.h"

namespace cmaf::core {
namespace {
using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double bus_factor(int n) { return n > 1 ? 2.0 * (n - 1) / n : 1.0; }

using cluster::Communicator;
using cluster::NamedTensor;

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
  return wrong;
}

}  // namespace cmaf::core
