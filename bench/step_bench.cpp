// Training-step benchmark of CMAformer: forward + backward + AdamW step on random data.
//
//   step_bench --preset paper --batch 2 --input-size 512 --threads 2 --precision fp32|bf16
//              [--channels-last] [--steps 5] [--warmup 2] [--sync-only] [--bf16-wire]
//              [--bucket-mib 25] [--first-bucket-mib 1] [--per-step] [--sync-batch-norm]
//              [--libtorch-optimizer]
//
// Prints the median step time, images/s and model FLOP utilisation: 3 x forward FLOPs (forward
// + backward) per second against the measured fp32 matrix-product peak of the same threads
// (2048^3 matmul). Checks its own run: the loss is finite at every step and the optimizer moved
// the weights ("#wrong 0").
//
// Launched by mpirun (several ranks), it trains data-parallel: parameters broadcast from rank 0,
// gradients averaged by the bucketed reducer, and it also prints the communication exposed after
// backward and the share of the all-reduce time hidden behind backward (overlap). With
// --sync-only the ranks do not all-reduce gradients: they only meet at a barrier after every
// step, so each step takes as long as the slowest rank's. That isolates what lockstep costs
// (waiting for the straggler of each step) from what moving gradients costs. With --bf16-wire the
// reducer sends the gradients as bf16 (half the bytes; BucketOptions::bf16_wire). Every run also
// prints the median of each phase of a step: forward (with the zeroing of gradients when there
// is no reducer), backward, after backward (the reducer's exposed communication), optimizer, and
// the lockstep barrier, and the median CPU seconds per step of the whole process and of the
// computing thread alone. With --threads 1 their difference is what the communication thread and
// MPI's own threads use (with more, LibTorch's other intra-op threads too), and the wall time
// beyond the computing thread's CPU time is time it spent off the CPU: waiting for the peer, or
// descheduled. --per-step prints the same figures for every measured step (numbered from 0 after
// the warm-up). --sync-batch-norm: batch statistics over all ranks, as `cmaformer train` does by
// default on several ranks (--sync-batch-norm 1): two small all-reduces per batch-norm layer and
// step, one in forward and one in backward. On one process it runs the same computation over a
// world of one (its compute cost alone; `cmaformer train` on one rank uses local batch norm).
// The optimizer is the trainer's (core/fused_optimizer.h: one pass over each parameter);
// --libtorch-optimizer runs torch::optim::AdamW instead (nine passes), for comparison.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cluster/differentiable_all_reduce.h"
#include "cluster/gradient_reducer.h"
#include "cluster/parameter_sync.h"
#include "cluster/process_runtime.h"
#include "common/heap_policy.h"
#include "core/fused_optimizer.h"
#include "model/cmaformer.h"
#include "model/batch_norm.h"
#include "model/cpu_autocast.h"
#include "model/model_info.h"

namespace {

using Clock = std::chrono::steady_clock;

// The middle value (upper middle for an even count) of `values`.
double median_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

double seconds_since(Clock::time_point start) { return seconds_between(start, Clock::now()); }

// CPU seconds consumed so far by the whole process (every thread: compute, communication,
// MPI's own) or by the calling thread alone.
double cpu_seconds(clockid_t clock) {
  timespec t{};
  clock_gettime(clock, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double measured_matmul_peak_gflops() {
  const int64_t n = 2048;
  const torch::Tensor a = torch::rand({n, n});
  const torch::Tensor b = torch::rand({n, n});
  torch::Tensor c = torch::matmul(a, b);
  double best = 0.0;
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    c = torch::matmul(a, b);
    best = std::max(best, 2.0 * n * n * n / seconds_since(start) / 1e9);
  }
  return best;
}

struct Options {
  std::string preset = "paper";
  int64_t batch = 2;
  int64_t input_size = 0;
  int threads = 2;
  std::string precision = "fp32";
  bool channels_last = false;
  int steps = 5;
  int warmup = 2;
  bool sync_only = false;
  bool bf16_wire = false;
  double bucket_mib = 25.0;        // BucketOptions::bucket_bytes (after the first bucket)
  double first_bucket_mib = 1.0;  // BucketOptions::first_bucket_bytes
  bool per_step = false;          // a line per measured step (rank, phases, CPU seconds)
  bool sync_batch_norm = false;   // statistics over all ranks (the trainer's default)
  bool libtorch_optimizer = false;  // torch::optim::AdamW instead of the trainer's FusedAdamW
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
      return argv[++i];
    };
    if (arg == "--preset") o.preset = next();
    else if (arg == "--batch") o.batch = std::stoll(next());
    else if (arg == "--input-size") o.input_size = std::stoll(next());
    else if (arg == "--threads") o.threads = std::stoi(next());
    else if (arg == "--precision") o.precision = next();
    else if (arg == "--channels-last") o.channels_last = true;
    else if (arg == "--steps") o.steps = std::stoi(next());
    else if (arg == "--warmup") o.warmup = std::stoi(next());
    else if (arg == "--sync-only") o.sync_only = true;
    else if (arg == "--bf16-wire") o.bf16_wire = true;
    else if (arg == "--bucket-mib") o.bucket_mib = std::stod(next());
    else if (arg == "--first-bucket-mib") o.first_bucket_mib = std::stod(next());
    else if (arg == "--per-step") o.per_step = true;
    else if (arg == "--sync-batch-norm") o.sync_batch_norm = true;
    else if (arg == "--libtorch-optimizer") o.libtorch_optimizer = true;
    else throw std::invalid_argument("unknown option " + arg);
  }
  if (o.precision != "fp32" && o.precision != "bf16") throw std::invalid_argument("--precision fp32|bf16");
  if (!(o.bucket_mib * (1 << 20) >= 4) || !(o.first_bucket_mib * (1 << 20) >= 4)) {
    throw std::invalid_argument("--bucket-mib and --first-bucket-mib must be at least 4 bytes (one float)");
  }
  return o;
}

}  // namespace

int run(const Options& o, cmaf::cluster::ProcessRuntime& runtime);

int main(int argc, char** argv) {
  using namespace cmaf::model;
  cmaf::keep_freed_memory_in_the_heap();  // the allocator policy of the cmaformer executable
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "step_bench: %s\n", e.what());
    return 2;
  }
  cmaf::cluster::RuntimeOptions runtime_options;
  runtime_options.threads = o.threads;
  auto runtime = cmaf::cluster::ProcessRuntime::start(&argc, &argv, runtime_options);
  const int wrong_code = run(o, *runtime);
  runtime.reset();
  return wrong_code;
}

int run(const Options& o, cmaf::cluster::ProcessRuntime& runtime) {
  using namespace cmaf::model;
  auto world = runtime.world_communicator();
  const bool distributed = world->size() > 1;
  torch::manual_seed(0);
  CmaformerConfig config = preset_config(o.preset);
  if (o.input_size > 0) config.input_size = o.input_size;
  const int64_t s = config.input_size;
  Cmaformer model(config);
  const auto memory_format = o.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  model->to(torch::kFloat, /*non_blocking=*/false);
  if (o.channels_last) {
    for (auto& p : model->parameters()) {
      if (p.dim() == 4) p.set_data(p.data().contiguous(memory_format));
    }
  }
  model->train();
  if (o.sync_batch_norm) cmaf::model::set_statistics_reducer(*model, cmaf::cluster::statistics_reducer(*world));
  const torch::optim::AdamWOptions adamw(1e-4);
  std::unique_ptr<torch::optim::Optimizer> optimizer_owner;
  if (o.libtorch_optimizer) {
    optimizer_owner = std::make_unique<torch::optim::AdamW>(model->parameters(), adamw);
  } else {
    optimizer_owner = std::make_unique<cmaf::core::FusedAdamW>(model->parameters(), adamw);
  }
  torch::optim::Optimizer& optimizer = *optimizer_owner;
  const torch::Tensor x = torch::randn({o.batch, 1, s, s}).contiguous(memory_format);
  const torch::Tensor target = torch::randint(0, config.classes, {o.batch, s, s});
  const ModelInfo info = describe_model(*model, s, s, o.batch);
  const double peak = measured_matmul_peak_gflops();
  const torch::Tensor probe_before = model->parameters().front().detach().clone();

  std::vector<cmaf::cluster::NamedTensor> parameters;
  for (const auto& p : model->named_parameters()) parameters.push_back({p.key(), p.value()});
  std::unique_ptr<cmaf::cluster::BucketedReducer> reducer;
  if (distributed) {
    std::vector<cmaf::cluster::NamedTensor> state = parameters;
    for (const auto& b : model->named_buffers()) state.push_back({b.key(), b.value()});
    cmaf::cluster::broadcast_tensors(state, *world);
    cmaf::cluster::BucketOptions bucket_options;
    bucket_options.bf16_wire = o.bf16_wire;
    bucket_options.bucket_bytes = static_cast<int64_t>(o.bucket_mib * (1 << 20));
    bucket_options.first_bucket_bytes = static_cast<int64_t>(o.first_bucket_mib * (1 << 20));
    if (!o.sync_only) reducer = std::make_unique<cmaf::cluster::BucketedReducer>(parameters, *world, bucket_options);
  }

  // Each measured step's phases, whose medians show where a 2-rank step's extra time goes.
  struct Phases {
    std::vector<double> forward, backward, after_backward, optimizer, barrier;
    // CPU seconds per step: the whole process, and the thread that computes (this one).
    std::vector<double> process_cpu, compute_cpu;
  } phases;
  std::vector<double> times;
  int64_t wrong = 0;
  for (int step = 0; step < o.warmup + o.steps; ++step) {
    const auto start = Clock::now();
    const double process_cpu_start = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
    const double compute_cpu_start = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
    // The reducer leaves no gradient to zero (autograd's fresh one moves into the bucket), as in
    // the trainer, which never calls zero_grad.
    if (reducer) {
      reducer->prepare_for_backward();
    } else {
      optimizer.zero_grad();
    }
    torch::Tensor loss;
    {
      CpuAutocast autocast(o.precision == "bf16");
      loss = torch::nn::functional::cross_entropy(model->forward(x).to(torch::kFloat), target);
    }
    const auto forward_done = Clock::now();
    loss.backward();
    const auto backward_done = Clock::now();
    if (reducer) reducer->finish();
    const auto reduced = Clock::now();
    optimizer.step();
    const auto stepped = Clock::now();
    if (distributed && o.sync_only) world->barrier();
    const auto end = Clock::now();
    const double process_cpu = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - process_cpu_start;
    const double compute_cpu = cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - compute_cpu_start;
    if (!std::isfinite(loss.item<double>())) ++wrong;
    if (step >= o.warmup) {
      times.push_back(seconds_between(start, end));
      phases.forward.push_back(seconds_between(start, forward_done));
      phases.backward.push_back(seconds_between(forward_done, backward_done));
      phases.after_backward.push_back(seconds_between(backward_done, reduced));
      phases.optimizer.push_back(seconds_between(reduced, stepped));
      phases.barrier.push_back(seconds_between(stepped, end));
      phases.process_cpu.push_back(process_cpu);
      phases.compute_cpu.push_back(compute_cpu);
      if (o.per_step) {
        std::printf("rank %d step %d: %.3f s; forward %.3f, backward %.3f, after backward %.3f, "
                    "optimizer %.3f, barrier %.3f s; cpu process %.3f, compute thread %.3f s\n", world->rank(),
                    step - o.warmup, times.back(), phases.forward.back(), phases.backward.back(),
                    phases.after_backward.back(), phases.optimizer.back(), phases.barrier.back(), process_cpu,
                    compute_cpu);
        std::fflush(stdout);  // whole lines: two processes may share the pipe
      }
    }
  }
  std::string overlap;
  if (distributed && o.sync_only) {
    overlap = "; " + std::to_string(world->size()) + " ranks in lockstep (barrier per step), no gradient all-reduce";
  } else if (distributed) {
    // The same gradients all-reduced with nothing to overlap: the time communication takes.
    std::vector<at::Tensor> grads;
    for (const auto& p : parameters) grads.push_back(p.tensor.grad().reshape({-1}));
    const at::Tensor gathered = at::cat(grads).to(o.bf16_wire ? at::kBFloat16 : at::kFloat);
    // Where the reducer's buckets live (node shared memory, when sums go there): a plain tensor
    // would be summed through the staging block, two copies more than the buckets pay.
    at::Tensor flat = world->new_buffer(gathered.numel(), gathered.options());
    flat.copy_(gathered);
    world->barrier();
    const auto start = Clock::now();
    world->all_reduce(flat, cmaf::cluster::ReduceOp::kAvg);
    const double alone = seconds_since(start);
    const double visible = median_of(phases.after_backward);
    char text[256];
    std::snprintf(text, sizeof(text), "; %d ranks%s%s, %lld buckets: all-reduce alone %.3f s, exposed after "
                  "backward %.3f s, %.0f %% hidden", world->size(), o.bf16_wire ? ", bf16 wire" : "",
                  o.sync_batch_norm ? ", sync batch norm" : "",
                  static_cast<long long>(reducer->bucket_count()), alone, visible,
                  100.0 * std::max(0.0, 1.0 - visible / alone));
    overlap = text;
  }
  if (torch::equal(probe_before, model->parameters().front().detach())) ++wrong;  // no update
  std::string optimizer_text;
  if (const auto* fused = dynamic_cast<const cmaf::core::FusedAdamW*>(&optimizer)) {
    optimizer_text = "; optimizer one-pass on " + std::to_string(fused->last_step_fused()) + " of " +
                     std::to_string(model->parameters().size()) + " parameters";
  }
  char phase_text[320];
  std::snprintf(phase_text, sizeof(phase_text), "; phases forward %.3f, backward %.3f, after backward %.3f, "
                "optimizer %.3f, barrier %.3f s; cpu per step: process %.3f, compute thread %.3f s",
                median_of(phases.forward), median_of(phases.backward), median_of(phases.after_backward),
                median_of(phases.optimizer), median_of(phases.barrier), median_of(phases.process_cpu),
                median_of(phases.compute_cpu));
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const double achieved = 3.0 * info.flops * static_cast<double>(o.batch) / median / 1e9;
  std::printf("preset %s %lldx%lld batch %lld threads %d %s%s%s: median step %.3f s (min %.3f, "
              "max %.3f, %zu steps), %.2f images/s, %.1f GFLOP/s = %.1f %% of the %.1f GFLOP/s "
              "fp32 matmul peak%s%s%s  #wrong %lld\n",
              o.preset.c_str(), static_cast<long long>(s), static_cast<long long>(s),
              static_cast<long long>(o.batch), o.threads, o.precision.c_str(),
              o.channels_last ? " channels-last" : "", o.libtorch_optimizer ? " libtorch-adamw" : "", median,
              times.front(), times.back(),
              times.size(), static_cast<double>(o.batch) / median, achieved, 100.0 * achieved / peak,
              peak, overlap.c_str(), phase_text, optimizer_text.c_str(), static_cast<long long>(wrong));
  return wrong == 0 ? 0 : 1;
}
