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

int64_t raw_sweep(Communicator& world, int iterations, int64_t max_mib) {
  const int n = world.size();
  const double expected = n * (n + 1) / 2.0;
  int64_t total_wrong = 0;
  if (world.rank() == 0) {
    std::printf("# %d ranks (%s); float32 sum; median of %d\n#%13s %12s %12s %12s %8s\n", n, world.name().c_str(),
                iterations, "bytes", "time (us)", "algbw GB/s", "busbw GB/s", "#wrong");
  }
  std::vector<int64_t> sizes;
  for (int64_t bytes = 1024; bytes <= max_mib * (int64_t{1} << 20); bytes *= 4) sizes.push_back(bytes);
  sizes.push_back(int64_t{25} << 20);  // the default bucket size, for the reducer comparison
  std::sort(sizes.begin(), sizes.end());
  for (int64_t bytes : sizes) {
    at::Tensor t = at::empty({bytes / 4}, at::kFloat);
    std::vector<double> times;
    int64_t wrong = 0;
    for (int i = 0; i < iterations + 2; ++i) {
      t.fill_(world.rank() + 1.0);
      world.barrier();
      const auto start = Clock::now();
      world.all_reduce(t, cluster::ReduceOp::kSum);
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      if (i >= 2) times.push_back(s);
      wrong += t.ne(expected).sum().item<int64_t>();
    }
    const double m = median(times);
    const double algbw = static_cast<double>(bytes) / m / 1e9;
    total_wrong += wrong;
    if (world.rank() == 0) {
      std::printf("%14lld %12.1f %12.3f %12.3f %8lld\n", static_cast<long long>(bytes), m * 1e6, algbw,
                  algbw * bus_factor(n), static_cast<long long>(wrong));
    }
  }
  return total_wrong;
}

// The bucketed reducer's cost beyond a backward that only produces constant gradients, and, in
// the same iterations (interleaved, so both see the same machine), a raw all-reduce of the same
// bytes: the ratio of the two is the reducer's overhead over the communicator itself.
int64_t reducer_cost(Communicator& world, std::vector<NamedTensor>& parameters, const std::string& label,
                     int iterations, bool bf16_wire) {
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
  auto raw = [&] {
    flat.fill_(world.rank() + 1.0);
    world.barrier();
    const auto start = Clock::now();
    world.all_reduce(flat, cluster::ReduceOp::kSum);
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  cluster::BucketOptions options;
  options.bf16_wire = bf16_wire;
  cluster::BucketedReducer reducer(parameters, world, options);
  const double expected = (n + 1) / 2.0;  // mean of r + 1 over ranks
  // bf16: each share (r + 1) / n is rounded, and so is each partial sum.
  const double tolerance = bf16_wire ? expected * n * std::ldexp(1.0, -8) : 0.0;
  std::vector<double> with, without, raws, ratios;
  int64_t wrong = 0;
  for (int i = 0; i < iterations + 1; ++i) {
    const double alone = backward(plain, nullptr);
    const double reduced = backward(parameters, &reducer);
    const double direct = raw();
    for (const auto& p : parameters) {
      wrong += (p.tensor.grad() - expected).abs().gt(tolerance).sum().item<int64_t>();
    }
    if (i == 0) continue;  // warm-up
    without.push_back(alone);
    with.push_back(reduced);
    raws.push_back(direct);
    ratios.push_back((reduced - alone) / direct);
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
  }
  return wrong;
}

}  // namespace

int64_t run_allreduce_benchmark(cluster::Communicator& world, const AllreduceBenchmarkOptions& options) {
  int64_t wrong = raw_sweep(world, options.iterations, options.max_mib);
  std::vector<NamedTensor> single{{"w", at::zeros({(int64_t{25} << 20) / 4}, at::kFloat).requires_grad_()}};
  wrong += reducer_cost(world, single, "one 25 MiB tensor", options.iterations, /*bf16_wire=*/false);
  model::Cmaformer network(model::preset_config(options.preset));
  std::vector<NamedTensor> parameters;
  for (const auto& p : network->named_parameters()) parameters.push_back({p.key(), p.value()});
  for (bool bf16 : {false, true}) {
    // A reducer per pass: each attaches its own hooks, so the parameters are fresh leaves each time.
    std::vector<NamedTensor> fresh;
    for (const auto& p : parameters) fresh.push_back({p.name, p.tensor.detach().clone().requires_grad_()});
    wrong += reducer_cost(world, fresh, options.preset + " preset gradients", options.iterations, bf16);
  }
  return wrong;
}

}  // namespace cmaf::core
