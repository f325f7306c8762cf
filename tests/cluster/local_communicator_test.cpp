// The cluster layer with ranks as threads over the local backend.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "cluster/cluster_error.h"
#include "cluster/device_communicator.h"
#include "cmaf/config.h"
#include "cluster/local_communicator.h"
#include "tests/cluster/collective_checks.h"

namespace cmaf::test {
namespace {

class Ranks : public ::testing::TestWithParam<int> {};

TEST_P(Ranks, AllReduce) { run_as_threads(GetParam(), check_all_reduce); }
TEST_P(Ranks, BroadcastGatherBarrier) { run_as_threads(GetParam(), check_broadcast_gather_barrier); }
TEST_P(Ranks, AsyncCollectivesCompleteInIssueOrder) { run_as_threads(GetParam(), check_async_order); }
TEST_P(Ranks, ParameterBroadcastAndFingerprints) { run_as_threads(GetParam(), check_parameter_sync); }

TEST_P(Ranks, ReducersAgreeWithBucketsSmallerThanOneTensor) {
  cluster::BucketOptions tiny;
  tiny.first_bucket_bytes = 16;
  tiny.bucket_bytes = 16;
  run_as_threads(GetParam(), [&](cluster::Communicator& c) { check_reducers_agree(c, tiny); });
}

TEST_P(Ranks, ReducersAgreeWithManyTensorsPerBucket) {
  run_as_threads(GetParam(), [](cluster::Communicator& c) { check_reducers_agree(c, {}); });
}

TEST_P(Ranks, GradientAccumulationAgreesWithTheReference) {
  cluster::BucketOptions small;
  small.first_bucket_bytes = 256;
  small.bucket_bytes = 1024;
  run_as_threads(GetParam(), [&](cluster::Communicator& c) { check_accumulation_agrees(c, small); });
}

TEST_P(Ranks, Bf16WireReducerAveragesRoundedShares) { run_as_threads(GetParam(), check_bf16_wire_reducer); }

INSTANTIATE_TEST_SUITE_P(WorldSizes, Ranks, ::testing::Values(1, 2, 3));

TEST(BucketedReducer, LayoutIsReverseRegistrationOrderWithTheFirstBucketCap) {
  std::vector<cluster::NamedTensor> params;
  for (int i = 0; i < 4; ++i) params.push_back({"p" + std::to_string(i), torch::zeros({256}, torch::requires_grad())});
  cluster::LocalCommunicator world;
  cluster::BucketOptions options;
  options.first_bucket_bytes = 1024;  // one 256-float tensor
  options.bucket_bytes = 2048;        // two of them
  cluster::BucketedReducer reducer(params, world, options);
  EXPECT_EQ(reducer.bucket_layout(), (std::vector<std::vector<std::string>>{{"p3"}, {"p2", "p1"}, {"p0"}}));
}

TEST(BucketedReducer, AParameterWithoutGradientIsNamed) {
  at::Tensor used = torch::ones({3}, torch::requires_grad());
  at::Tensor unused = torch::ones({2}, torch::requires_grad());
  cluster::LocalCommunicator world;
  cluster::BucketedReducer reducer({{"encoder.used", used}, {"decoder.spare", unused}}, world);
  reducer.prepare_for_backward();
  (used * 2).sum().backward();
  try {
    reducer.finish();
    FAIL();
  } catch (const cluster::ClusterError& e) {
    EXPECT_NE(std::string(e.what()).find("received no gradient in this step: decoder.spare"), std::string::npos)
        << e.what();
  }
}

// A parameter that gets no gradient on one rank only: every rank fails with the error (that rank
// naming it, the others naming the rank), none waits for a bucket the other never sends. Small
// buckets put the missing one first, ahead of buckets the other rank fills.
TEST(BucketedReducer, AGradientMissingOnOneRankFailsEveryRank) {
  run_as_threads(2, [](cluster::Communicator& c) {
    at::Tensor used = torch::ones({64}, torch::requires_grad());
    at::Tensor sometimes = torch::ones({64}, torch::requires_grad());
    cluster::BucketOptions tiny;
    tiny.first_bucket_bytes = 64;
    tiny.bucket_bytes = 64;
    cluster::BucketedReducer reducer({{"encoder.used", used}, {"decoder.branch", sometimes}}, c, tiny);
    reducer.prepare_for_backward();
    at::Tensor loss = (used * 2).sum();
    if (c.rank() == 0) loss = loss + sometimes.sum();  // rank 1 skips the branch
    loss.backward();
    try {
      reducer.finish();
      ADD_FAILURE() << "rank " << c.rank() << ": no error";
    } catch (const cluster::ClusterError& e) {
      const std::string what = e.what();
      if (c.rank() == 1) {
        EXPECT_NE(what.find("received no gradient in this step: decoder.branch (rank(s) with some: 1)"), std::string::npos)
            << what;
      } else {
        EXPECT_NE(what.find("received no gradient in this step on rank(s) 1 (named in their error)"), std::string::npos)
            << what;
      }
    }
    // The ranks are still in step: the next step, with the branch everywhere, averages.
    reducer.prepare_for_backward();
    ((used * 2).sum() + sometimes.sum() * (c.rank() + 1.0)).backward();
    reducer.finish();
    EXPECT_TRUE(sometimes.grad().eq(1.5f).all().item<bool>()) << sometimes.grad();
  });
}

// Gradient accumulation where a parameter is used in some micro-batches only (not the first; not
// the last): the averaged gradient is the reference's sum over the micro-batches that used it.
TEST(BucketedReducer, AccumulationOverMicroBatchesThatSkipAParameter) {
  run_as_threads(2, [](cluster::Communicator& c) {
    at::Tensor a = torch::ones({32}, torch::requires_grad());
    at::Tensor late = torch::ones({32}, torch::requires_grad());   // not in micro-batch 0
    at::Tensor early = torch::ones({32}, torch::requires_grad());  // not in the last
    cluster::BucketOptions tiny;
    tiny.first_bucket_bytes = 128;
    tiny.bucket_bytes = 128;
    cluster::BucketedReducer reducer({{"a", a}, {"late", late}, {"early", early}}, c, tiny);
    const double r = c.rank();
    for (int micro = 0; micro < 3; ++micro) {
      reducer.prepare_for_micro_backward(micro == 0, micro == 2);
      at::Tensor loss = a.sum() * (micro + 1.0);
      if (micro > 0) loss = loss + late.sum() * (r + 1.0);
      if (micro < 2) loss = loss + early.sum() * (10.0 * (r + 1.0));
      loss.backward();
    }
    reducer.finish();
    // Sums over the micro-batches, then the mean over ranks 0 and 1.
    EXPECT_TRUE(a.grad().eq(6.0f).all().item<bool>()) << a.grad();
    EXPECT_TRUE(late.grad().eq(3.0f).all().item<bool>()) << late.grad();     // 2 (r + 1), mean 3
    EXPECT_TRUE(early.grad().eq(30.0f).all().item<bool>()) << early.grad();  // 20 (r + 1), mean 30
  });
}

// finish() must follow the last micro-batch's backward (nothing was sent before it).
TEST(BucketedReducer, FinishAfterANonLastMicroBatchIsAnError) {
  at::Tensor p = torch::ones({4}, torch::requires_grad());
  cluster::LocalCommunicator world;
  cluster::BucketedReducer reducer({{"p", p}}, world);
  reducer.prepare_for_micro_backward(true, false);
  p.sum().backward();
  try {
    reducer.finish();
    FAIL() << "finish() accepted";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("not the last micro-batch"), std::string::npos) << e.what();
  }
}

// Overlap: every bucket's all-reduce is issued during backward, as its gradients become ready,
// not in finish().
class CountingCommunicator : public cluster::Communicator {
 public:
  std::string name() const override { return "counting"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  cluster::WorkHandle all_reduce_async(at::Tensor tensor, cluster::ReduceOp op) override {
    ++all_reduces;
    return inner.all_reduce_async(tensor, op);
  }
  cluster::WorkHandle broadcast_async(at::Tensor tensor, int root) override { return inner.broadcast_async(tensor, root); }
  cluster::WorkHandle all_gather_async(at::Tensor tensor, at::Tensor output) override {
    return inner.all_gather_async(tensor, output);
  }
  cluster::WorkHandle barrier_async() override { return inner.barrier_async(); }
  int all_reduces = 0;

 private:
  cluster::LocalCommunicator inner;
};

TEST(BucketedReducer, EveryBucketIsSentDuringBackward) {
  std::vector<cluster::NamedTensor> params;
  for (int i = 0; i < 6; ++i) params.push_back({"p" + std::to_string(i), torch::ones({64}, torch::requires_grad())});
  CountingCommunicator counting;
  cluster::BucketOptions small;
  small.first_bucket_bytes = 256;
  small.bucket_bytes = 512;
  cluster::BucketedReducer reducer(params, counting, small);
  ASSERT_EQ(reducer.bucket_count(), 4);
  // A chain through p0, p1, ..., p5 in registration order: backward produces p5's gradient first
  // and p0's last. When p0's gradient is computed, the three buckets before its own must be on
  // their way.
  int sent_before_last = -1;
  params[0].tensor.register_hook([&](at::Tensor g) {
    sent_before_last = counting.all_reduces;
    return g;
  });
  reducer.prepare_for_backward();
  at::Tensor x = torch::ones({64});
  for (size_t i = 0; i < params.size(); ++i) x = (x * params[i].tensor).sin();
  x.sum().backward();
  EXPECT_EQ(sent_before_last, 3);
  EXPECT_EQ(counting.all_reduces, 4) << "every bucket sent by the end of backward";
  reducer.finish();
  EXPECT_EQ(counting.all_reduces, 4);
}

TEST(ReferenceReducer, AParameterWithoutGradientIsNamed) {
  at::Tensor used = torch::ones({3}, torch::requires_grad());
  at::Tensor unused = torch::ones({2}, torch::requires_grad());
  cluster::LocalCommunicator world;
  cluster::ReferenceReducer reducer({{"encoder.used", used}, {"decoder.spare", unused}}, world);
  (used * 2).sum().backward();
  try {
    reducer.finish();
    FAIL();
  } catch (const cluster::ClusterError& e) {
    EXPECT_NE(std::string(e.what()).find("received no gradient: decoder.spare."), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("encoder.used"), std::string::npos) << e.what();
  }
}

// Channels-last weights: the bucket views take the weight's strides, so the averaged gradient is
// channels-last like the weight, and matches the reference reducer's.
TEST(BucketedReducer, ChannelsLastWeightsGetChannelsLastAveragedGradients) {
  run_as_threads(2, [](cluster::Communicator& c) {
    const auto cl = torch::MemoryFormat::ChannelsLast;
    // Values from formulas, not the global generator: the rank threads would race on its seed.
    auto values = [](std::vector<int64_t> sizes, double phase) {
      int64_t n = 1;
      for (int64_t v : sizes) n *= v;
      return torch::arange(n, torch::kFloat).mul(0.37).add(phase).sin().reshape(sizes);
    };
    auto make = [&] {
      at::Tensor w = values({6, 3, 3, 3}, 0.0).contiguous(cl).set_requires_grad(true);
      at::Tensor b = values({6}, 1.0).set_requires_grad(true);
      return std::vector<cluster::NamedTensor>{{"w", w}, {"b", b}};
    };
    auto backward = [&](const std::vector<cluster::NamedTensor>& p) {
      const at::Tensor x = values({2, 3, 8, 8}, 2.0 + c.rank()).contiguous(cl);  // different data per rank
      at::conv2d(x, p[0].tensor, p[1].tensor).square().sum().backward();
    };
    const auto bucketed = make();
    cluster::BucketedReducer reducer(bucketed, c);
    reducer.prepare_for_backward();
    backward(bucketed);
    reducer.finish();
    const auto reference = make();
    cluster::ReferenceReducer plain(reference, c);
    backward(reference);
    plain.finish();
    EXPECT_TRUE(bucketed[0].tensor.grad().is_contiguous(cl));
    // Close rather than equal: the rank threads share LibTorch's intra-op pool.
    EXPECT_TRUE(torch::allclose(bucketed[0].tensor.grad(), reference[0].tensor.grad(), 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(bucketed[1].tensor.grad(), reference[1].tensor.grad(), 1e-5, 1e-6));
  });
}

TEST(BucketedReducer, Bf16WireIsCloseToFp32) {
  cluster::BucketOptions bf16;
  bf16.bf16_wire = true;
  run_as_threads(2, [&](cluster::Communicator& c) {
    at::Tensor p = torch::full({1000}, 1.0, torch::requires_grad());
    cluster::BucketedReducer reducer({{"p", p}}, c, bf16);
    reducer.prepare_for_backward();
    (p * (1.0 + 0.001 * c.rank())).sum().backward();  // gradient 1 + 0.001 r
    reducer.finish();
    EXPECT_NEAR(p.grad()[0].item<double>(), 1.0005, 1e-2);
  });
}

TEST(LocalGroup, MismatchedCollectivesAreErrorsNotHangs) {
  run_as_threads(2, [](cluster::Communicator& c) {
    const at::Tensor t = torch::ones({c.rank() + 1});  // different shapes
    EXPECT_THROW(c.all_reduce(t, cluster::ReduceOp::kSum), InternalError);
  });
  // The same tensors, but another reduction or root on rank 1: an error naming both, not a result
  // that depends on which rank arrived last.
  run_as_threads(2, [](cluster::Communicator& c) {
    try {
      c.all_reduce(torch::ones({3}), c.rank() == 0 ? cluster::ReduceOp::kSum : cluster::ReduceOp::kMax);
      ADD_FAILURE() << "different reductions accepted";
    } catch (const InternalError& e) {
      EXPECT_NE(std::string(e.what()).find("different reductions: sum on rank 0, max on rank 1"), std::string::npos)
          << e.what();
    }
    try {
      c.broadcast(torch::ones({3}), c.rank());
      ADD_FAILURE() << "different roots accepted";
    } catch (const InternalError& e) {
      EXPECT_NE(std::string(e.what()).find("different broadcast roots: 0 on rank 0, 1 on rank 1"), std::string::npos)
          << e.what();
    }
  });
}

// Host backends read tensor memory directly: a tensor on another device (meta here, a GPU in a
// CUDA build) is an error naming the device, not a read of a device pointer.
TEST(LocalGroup, TensorsOffTheCpuAreRefusedNamingTheirDevice) {
  cluster::LocalCommunicator single;
  const at::Tensor elsewhere = torch::empty({4}, torch::TensorOptions().device(torch::kMeta));
  try {
    single.all_reduce(elsewhere, cluster::ReduceOp::kSum);
    FAIL() << "expected an error";
  } catch (const InternalError& e) {
    EXPECT_NE(std::string(e.what()).find("all_reduce takes CPU tensors, got one on meta"), std::string::npos)
        << e.what();
  }
}

// A build without CMAF_WITH_CUDA has no NCCL backend: asking for one says how to build it.
TEST(DeviceCommunicator, WithoutACudaBuildTheErrorSaysHowToGetOne) {
  if (CMAF_WITH_CUDA) GTEST_SKIP() << "CUDA build: the NCCL backend is tested by nccl_without_gpu_probe";
  cluster::LocalCommunicator bootstrap;
  try {
    cluster::make_cuda_communicator(bootstrap, 0);
    FAIL() << "expected a ClusterError";
  } catch (const cluster::ClusterError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0: this build has no NCCL backend"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("-DCMAF_WITH_CUDA=ON"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cmaf::test
