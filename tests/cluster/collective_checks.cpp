#include "tests/cluster/collective_checks.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <thread>

#include "cluster/cluster_error.h"
#include "cluster/local_communicator.h"
#include "cluster/parameter_sync.h"

namespace cmaf::test {
using cluster::Communicator;
using cluster::NamedTensor;
using cluster::ReduceOp;

void check_all_reduce(Communicator& c) {
  const int r = c.rank();
  const int n = c.size();
  const double rank_sum = n * (n - 1) / 2.0;
  for (at::ScalarType type : {at::kFloat, at::kDouble, at::kBFloat16}) {
    at::Tensor sum = at::full({5}, r + 1.0, at::TensorOptions().dtype(type));
    c.all_reduce(sum, ReduceOp::kSum);
    EXPECT_EQ(sum[4].item<double>(), rank_sum + n) << at::toString(type);
    at::Tensor avg = at::full({3}, 2.0 * r, at::TensorOptions().dtype(type));
    c.all_reduce(avg, ReduceOp::kAvg);
    EXPECT_NEAR(avg[0].item<double>(), 2.0 * rank_sum / n, 1e-2) << at::toString(type);
    at::Tensor max = at::arange(4, at::TensorOptions().dtype(type)) * (r + 1);
    c.all_reduce(max, ReduceOp::kMax);
    EXPECT_EQ(max[3].item<double>(), 3.0 * n) << at::toString(type);
    // The largest value on rank 0 (not just the last rank's tensor), and a NaN on each rank in
    // turn: element i + 1 is NaN on rank i only, and the max is NaN whichever rank holds it.
    at::Tensor with_nan = at::full({n + 1}, r == 0 ? 50.0 : -1.0 * r, at::TensorOptions().dtype(type));
    with_nan[r + 1] = std::nan("");
    c.all_reduce(with_nan, ReduceOp::kMax);
    EXPECT_EQ(with_nan[0].item<double>(), 50.0) << at::toString(type);
    for (int i = 1; i <= n; ++i) {
      EXPECT_TRUE(std::isnan(with_nan[i].item<double>())) << at::toString(type) << ": NaN on rank " << i - 1 << " lost";
    }
  }
  at::Tensor counts = at::full({2}, int64_t{1} << 40, at::kLong) + r;
  c.all_reduce(counts, ReduceOp::kSum);
  EXPECT_EQ(counts[0].item<int64_t>(), n * (int64_t{1} << 40) + static_cast<int64_t>(rank_sum));
  // int64 max, beyond float's exact integers: the highest rank's value, bit for bit, and a
  // negative value larger on rank 0 (element 1) so that max is not just the last rank's tensor.
  at::Tensor largest = at::tensor({(int64_t{1} << 53) + 1 + r, -int64_t{1000} * (r + 1)}, at::kLong);
  c.all_reduce(largest, ReduceOp::kMax);
  EXPECT_EQ(largest[0].item<int64_t>(), (int64_t{1} << 53) + n);
  EXPECT_EQ(largest[1].item<int64_t>(), -1000);
  try {
    c.all_reduce(at::ones({2}, at::kInt), ReduceOp::kSum);
    ADD_FAILURE() << "int32 must be refused";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("communicator " + c.name() + " does not support all_reduce (sum) of Int"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(c.all_reduce(at::ones({2}, at::kLong), ReduceOp::kAvg), InternalError);
  EXPECT_THROW(c.all_reduce(at::ones({4, 8}).slice(1, 0, 4), ReduceOp::kSum), InternalError);  // not dense (a column slice)
}

void check_broadcast_gather_barrier(Communicator& c) {
  at::Tensor value = at::full({4}, 10.0 + c.rank());
  const int root = c.size() - 1;
  c.broadcast(value, root);
  EXPECT_EQ(value[0].item<double>(), 10.0 + root);
  const at::Tensor gathered = c.all_gather(at::full({2}, static_cast<int64_t>(c.rank()), at::kLong));
  ASSERT_EQ(gathered.sizes(), (std::vector<int64_t>{c.size(), 2}));
  for (int r = 0; r < c.size(); ++r) EXPECT_EQ(gathered[r][1].item<int64_t>(), r);
  c.barrier();
}

void check_async_order(Communicator& c) {
  std::vector<at::Tensor> tensors;
  std::vector<cluster::WorkHandle> works;
  for (int i = 0; i < 8; ++i) {
    tensors.push_back(at::full({1000}, static_cast<double>(i + c.rank())));
    works.push_back(c.all_reduce_async(tensors.back(), ReduceOp::kSum));
  }
  for (int i = 7; i >= 0; --i) works[static_cast<size_t>(i)]->wait();  // waiting out of order is fine
  const double rank_sum = c.size() * (c.size() - 1) / 2.0;
  for (int i = 0; i < 8; ++i) EXPECT_EQ(tensors[static_cast<size_t>(i)][999].item<double>(), i * c.size() + rank_sum);
  // Every kind of collective in flight at once: issued in one order, waited in the reverse.
  const at::Tensor mine = at::full({2, 3}, static_cast<int64_t>(c.rank()), at::kLong);
  at::Tensor gathered = at::full({c.size(), 2, 3}, int64_t{-1}, at::kLong);
  at::Tensor summed = at::full({5}, 1.0 + c.rank());
  at::Tensor broadcast = at::full({3}, 100.0 + c.rank(), at::kDouble);
  // A channels-last 4-d tensor: gathered in contiguous order.
  const at::Tensor image = at::arange(16, at::kFloat).reshape({1, 2, 2, 4}).add(c.rank()).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor images = at::empty({c.size(), 1, 2, 2, 4}, at::kFloat);
  const cluster::WorkHandle gather_work = c.all_gather_async(mine, gathered);
  const cluster::WorkHandle sum_work = c.all_reduce_async(summed, ReduceOp::kSum);
  const cluster::WorkHandle barrier_work = c.barrier_async();
  const cluster::WorkHandle broadcast_work = c.broadcast_async(broadcast, 0);
  const cluster::WorkHandle image_work = c.all_gather_async(image, images);
  for (const auto& w : {image_work, broadcast_work, barrier_work, sum_work, gather_work}) w->wait();
  for (int r = 0; r < c.size(); ++r) {
    EXPECT_TRUE(gathered[r].eq(r).all().item<bool>()) << "all_gather_async, rank " << r << "'s row";
    EXPECT_TRUE(at::equal(images[r], at::arange(16, at::kFloat).reshape({1, 2, 2, 4}).add(r)))
        << "all_gather_async of a channels-last tensor, rank " << r;
  }
  EXPECT_EQ(summed[4].item<double>(), rank_sum + c.size());
  EXPECT_EQ(broadcast[2].item<double>(), 100.0);
  EXPECT_TRUE(barrier_work->completed());
  // An output of the wrong shape or dtype is refused before anything is sent, naming both.
  try {
    c.all_gather_async(mine, at::empty({c.size() + 1, 2, 3}, at::kLong));
    ADD_FAILURE() << "a wrong all_gather output was accepted";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("needs a contiguous output of sizes [" + std::to_string(c.size()) + ", 2, 3]"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(c.all_gather_async(mine, at::empty({c.size(), 2, 3}, at::kFloat)), InternalError);
  c.barrier();
}

namespace {

struct SmallNet : torch::nn::Module {
  SmallNet() {
    conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3)));
    conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 6, 3)));
    head = register_module("head", torch::nn::Linear(6 * 4 * 4, 3));
  }
  at::Tensor forward(const at::Tensor& x) {
    return head(at::relu(conv2(at::relu(conv1(x)))).flatten(1));
  }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear head{nullptr};
};

std::vector<NamedTensor> named(torch::nn::Module& module) {
  std::vector<NamedTensor> out;
  for (const auto& p : module.named_parameters()) out.push_back({p.key(), p.value()});
  return out;
}

// Different data on every rank, from a generator of its own: ranks may be threads of one
// process, which must not share the global generator.
void copy_parameters(SmallNet& from, SmallNet& to) {
  torch::NoGradGuard no_grad;
  const auto source = from.parameters();
  const auto target = to.parameters();
  for (size_t k = 0; k < source.size(); ++k) target[k].copy_(source[k]);
}

// `micro` > 0: another micro-batch, its gradient added to the present one.
void local_backward(SmallNet& net, int rank, int micro = 0) {
  at::Generator generator = at::detail::createCPUGenerator(100 + static_cast<uint64_t>(rank) + 1000 * micro);
  const at::Tensor x = at::randn({4, 1, 8, 8}, generator);
  const at::Tensor y = at::randint(0, 3, {4}, generator);
  if (micro == 0) net.zero_grad();
  torch::nn::functional::cross_entropy(net.forward(x), y).backward();
}

}  // namespace

void check_reducers_agree(Communicator& c, const cluster::BucketOptions& options) {
  SmallNet reference_net;
  SmallNet bucketed_net;
  copy_parameters(reference_net, bucketed_net);
  cluster::ReferenceReducer reference(named(reference_net), c);
  cluster::BucketedReducer bucketed(named(bucketed_net), c, options);
  // The bucketed side goes through a real optimizer's zero_grad() (it detach_()es gradients).
  torch::optim::SGD optimizer(bucketed_net.parameters(), torch::optim::SGDOptions(0.0));

  for (int step = 0; step < 2; ++step) {  // a second step: the reducer resets cleanly
    local_backward(reference_net, c.rank());
    std::vector<at::Tensor> local;
    for (const auto& p : reference_net.parameters()) local.push_back(p.grad().clone());
    reference.finish();

    optimizer.zero_grad();
    bucketed.prepare_for_backward();
    local_backward(bucketed_net, c.rank());
    bucketed.finish();
    optimizer.step();  // learning rate 0: exercises the step without changing the weights

    const auto a = reference_net.parameters();
    const auto b = bucketed_net.parameters();
    for (size_t k = 0; k < a.size(); ++k) {
      EXPECT_TRUE(torch::equal(a[k].grad(), b[k].grad())) << "parameter " << k << " step " << step;
      // And it is the mean of the ranks' local gradients.
      const at::Tensor mean = c.all_gather(local[k]).mean(0);
      EXPECT_TRUE(torch::allclose(a[k].grad(), mean, 1e-5, 1e-7)) << "parameter " << k;
    }
  }
}

void check_accumulation_agrees(Communicator& c, const cluster::BucketOptions& options) {
  SmallNet reference_net;
  SmallNet bucketed_net;
  copy_parameters(reference_net, bucketed_net);
  cluster::ReferenceReducer reference(named(reference_net), c);
  cluster::BucketedReducer bucketed(named(bucketed_net), c, options);
  for (int step = 0; step < 2; ++step) {
    // Three micro-batches: gradients summed locally, averaged over ranks once.
    for (int micro = 0; micro < 3; ++micro) local_backward(reference_net, c.rank(), micro);
    reference.finish();
    for (int micro = 0; micro < 3; ++micro) {
      bucketed.prepare_for_micro_backward(micro == 0, micro == 2);
      local_backward(bucketed_net, c.rank(), micro == 0 ? 0 : micro);
    }
    bucketed.finish();
    const auto a = reference_net.parameters();
    const auto b = bucketed_net.parameters();
    for (size_t k = 0; k < a.size(); ++k) {
      EXPECT_TRUE(torch::equal(a[k].grad(), b[k].grad())) << "parameter " << k << " step " << step;
    }
  }
}

void check_parameter_sync(Communicator& c) {
  torch::manual_seed(1000 + c.rank());  // different initialisation on every rank
  SmallNet net;
  auto tensors = named(net);
  if (c.size() > 1) {
    EXPECT_THROW(cluster::check_replicas_identical(tensors, c, "parameters"), cluster::ClusterError);
  }
  cluster::broadcast_tensors(tensors, c, 0);
  EXPECT_NO_THROW(cluster::check_replicas_identical(tensors, c, "parameters"));
  if (c.size() > 1) {
    if (c.rank() == 1) {
      torch::NoGradGuard no_grad;
      net.head->bias[0] += 1e-6f;
    }
    try {
      cluster::check_replicas_identical(tensors, c, "parameters after resume");
      ADD_FAILURE() << "a drifted replica must be found";
    } catch (const cluster::ClusterError& e) {
      EXPECT_NE(std::string(e.what()).find("parameters after resume differ between ranks: rank(s) 1 "),
                std::string::npos) << e.what();
    }
  }
}

void check_matches_local_backend(Communicator& c) {
  for (at::ScalarType type : {at::kFloat, at::kBFloat16}) {
    at::Generator generator = at::detail::createCPUGenerator(500 + static_cast<uint64_t>(c.rank()));
    const at::Tensor mine = at::randn({4099}, generator).to(type);  // an odd size: no block alignment luck
    const at::Tensor everyone = c.all_gather(mine);                  // [size, 4099], the same inputs everywhere
    // What the local backend computes from these inputs, with ranks as threads of this process.
    std::vector<at::Tensor> local_results(static_cast<size_t>(c.size()));
    run_as_threads(c.size(), [&](Communicator& local) {
      at::Tensor t = everyone[local.rank()].clone();
      local.all_reduce(t, ReduceOp::kSum);
      local_results[static_cast<size_t>(local.rank())] = t;
    });
    at::Tensor reduced = mine.clone();
    c.all_reduce(reduced, ReduceOp::kSum);
    if (c.size() <= 2) {
      EXPECT_TRUE(torch::equal(reduced, local_results[0])) << c.name() << " vs local, " << at::toString(type);
    } else if (type == at::kFloat) {
      EXPECT_TRUE(torch::allclose(reduced, local_results[0], 1e-5, 1e-6)) << c.name() << " vs local";
    } else {
      // bf16 partial sums are rounded (communicator.h): n - 1 roundings against one, 8-bit mantissa.
      const at::Tensor error = (reduced.to(at::kFloat) - local_results[0].to(at::kFloat)).abs();
      const at::Tensor bound = everyone.to(at::kFloat).abs().sum(0) * (c.size() * std::ldexp(1.0, -8));
      EXPECT_TRUE(error.le(bound).all().item<bool>()) << c.name() << " vs local, bf16: max error "
                                                      << error.max().item<double>();
    }
  }
  // Every dtype's max, and float64 and int64 sums of integer values, are exact at any world size:
  // the backends must agree bit for bit.
  for (at::ScalarType type : {at::kFloat, at::kDouble, at::kBFloat16, at::kLong}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax}) {
      if (op == ReduceOp::kSum && (type == at::kFloat || type == at::kBFloat16)) continue;  // above
      at::Generator generator = at::detail::createCPUGenerator(700 + static_cast<uint64_t>(c.rank()));
      const at::Tensor mine = at::randn({1031}, generator).mul(100).round().to(type);
      const at::Tensor everyone = c.all_gather(mine);
      std::vector<at::Tensor> local_results(static_cast<size_t>(c.size()));
      run_as_threads(c.size(), [&](Communicator& local) {
        at::Tensor t = everyone[local.rank()].clone();
        local.all_reduce(t, op);
        local_results[static_cast<size_t>(local.rank())] = t;
      });
      at::Tensor reduced = mine.clone();
      c.all_reduce(reduced, op);
      EXPECT_TRUE(torch::equal(reduced, local_results[0]))
          << c.name() << " vs local, " << at::toString(type) << " " << to_string(op);
    }
  }
}

void check_bf16_wire_reducer(Communicator& c) {
  SmallNet net;
  std::vector<NamedTensor> parameters = named(net);
  cluster::broadcast_tensors(parameters, c, 0);
  cluster::BucketOptions options;
  options.first_bucket_bytes = 64;  // several buckets
  options.bucket_bytes = 512;
  options.bf16_wire = true;
  cluster::BucketedReducer reducer(parameters, c, options);
  for (int step = 0; step < 2; ++step) {
    reducer.prepare_for_backward();
    local_backward(net, c.rank(), /*micro=*/step + 1);  // a micro-batch seed: no zero_grad() after prepare
    std::vector<at::Tensor> local;
    for (const auto& p : net.parameters()) local.push_back(p.grad().clone());  // before finish: still local
    reducer.finish();
    std::vector<NamedTensor> grads;
    for (size_t k = 0; k < local.size(); ++k) {
      const at::Tensor averaged = parameters[k].tensor.grad();
      grads.push_back({parameters[k].name, averaged});
      const at::Tensor everyone = c.all_gather(local[k]).to(at::kFloat);
      // Each rank's share g / n rounded to bf16, then summed with bf16 rounding.
      const at::Tensor shares = (everyone * (1.0f / static_cast<float>(c.size()))).to(at::kBFloat16).to(at::kFloat);
      if (c.size() <= 2) {
        at::Tensor expected = shares[0].to(at::kBFloat16);
        if (c.size() == 2) expected = (shares[0] + shares[1]).to(at::kBFloat16);
        EXPECT_TRUE(torch::equal(averaged, expected.to(at::kFloat))) << parameters[k].name << " step " << step;
      }
      const at::Tensor bound = everyone.abs().sum(0) / c.size() * (c.size() * std::ldexp(1.0, -8)) + 1e-30;
      EXPECT_TRUE((averaged - everyone.mean(0)).abs().le(bound).all().item<bool>()) << parameters[k].name;
    }
    // Every rank holds the same averaged gradients, bit for bit.
    EXPECT_NO_THROW(cluster::check_replicas_identical(grads, c, "bf16-wire gradients"));
  }
}

void run_as_threads(int ranks, const std::function<void(Communicator&)>& body) {
  auto communicators = cluster::make_local_group(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      at::set_num_threads(1);
      body(*communicators[static_cast<size_t>(r)]);
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace cmaf::test
