// All-reduce benchmark in nccl-tests units, for the raw communicator and the bucketed reducer.
//
//   mpirun -np 2 --bind-to none build/bench/allreduce_bench [--iterations 10] [--max-mib 256]
//
// Part 1, raw communicator: float32 sum all-reduce of 1 KiB .. max MiB, median time, algbw =
// bytes / time, busbw = algbw * 2 (n - 1) / n, and #wrong: elements that differ from the
// expected sum (rank r contributes r + 1).
// Part 2, bucketed reducer on one 25 MiB tensor and on the paper preset's 47.7 M gradients: a
// cheap backward (rank-dependent constant gradients) timed without and with the reducer; the
// difference is the reducer's cost (copies into and out of buckets plus communication),
// reported as busbw over the gradient bytes, with #wrong.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cluster/gradient_reducer.h"
#include "cluster/process_runtime.h"
#include "model/cmaformer.h"

namespace {
using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double bus_factor(int n) { return n > 1 ? 2.0 * (n - 1) / n : 1.0; }

using cmaf::cluster::Communicator;
using cmaf::cluster::NamedTensor;

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
      world.all_reduce(t, cmaf::cluster::ReduceOp::kSum);
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

int64_t reducer_cost(Communicator& world, std::vector<NamedTensor>& parameters, const std::string& label,
                     int iterations) {
  const int n = world.size();
  int64_t bytes = 0;
  for (const auto& p : parameters) bytes += p.tensor.numel() * 4;
  auto backward = [&](cmaf::cluster::BucketedReducer* reducer) {
    for (auto& p : parameters) p.tensor.mutable_grad() = at::Tensor();
    world.barrier();
    const auto start = Clock::now();
    if (reducer) reducer->prepare_for_backward();
    at::Tensor loss = at::zeros({}, at::kFloat);
    for (const auto& p : parameters) loss = loss + p.tensor.sum() * (world.rank() + 1.0);
    loss.backward();
    if (reducer) reducer->finish();
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  std::vector<double> with, without;
  for (int i = 0; i < iterations + 1; ++i) {
    const double s = backward(nullptr);  // before the reducer exists: no hooks
    if (i >= 1) without.push_back(s);
  }
  cmaf::cluster::BucketedReducer reducer(parameters, world);
  int64_t wrong = 0;
  const double expected = (n + 1) / 2.0;  // mean of r + 1 over ranks
  for (int i = 0; i < iterations + 1; ++i) {
    const double s = backward(&reducer);
    if (i >= 1) with.push_back(s);
    for (const auto& p : parameters) wrong += p.tensor.grad().ne(expected).sum().item<int64_t>();
  }
  const double cost = median(with) - median(without);
  if (world.rank() == 0) {
    std::printf("# bucketed reducer, %s: %zu tensors, %lld buckets, %lld bytes: %.1f ms beyond backward "
                "(backward alone %.1f ms), busbw %.3f GB/s, #wrong %lld\n",
                label.c_str(), parameters.size(), static_cast<long long>(reducer.bucket_count()),
                static_cast<long long>(bytes), cost * 1e3, median(without) * 1e3, bytes / cost / 1e9 * bus_factor(n),
                static_cast<long long>(wrong));
  }
  return wrong;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cmaf;
  int iterations = 10;
  int64_t max_mib = 256;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--iterations") == 0) iterations = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--max-mib") == 0) max_mib = std::atoll(argv[i + 1]);
  }
  cluster::RuntimeOptions options;
  options.threads = 1;
  auto runtime = cluster::ProcessRuntime::start(&argc, &argv, options);
  int64_t wrong = 0;
  {
    auto world = runtime->world_communicator();
    wrong += raw_sweep(*world, iterations, max_mib);
    std::vector<NamedTensor> single{{"w", at::zeros({(int64_t{25} << 20) / 4}, at::kFloat).requires_grad_()}};
    wrong += reducer_cost(*world, single, "one 25 MiB tensor", iterations);
    model::Cmaformer network(model::preset_config("paper"));
    std::vector<NamedTensor> parameters;
    for (const auto& p : network->named_parameters()) parameters.push_back({p.key(), p.value()});
    wrong += reducer_cost(*world, parameters, "paper preset gradients", iterations);
  }
  runtime.reset();
  return wrong == 0 ? 0 : 1;
}
