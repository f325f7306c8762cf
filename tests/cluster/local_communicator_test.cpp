// The cluster layer with ranks as threads over the local backend.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "cluster/cluster_error.h"
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
    EXPECT_NE(std::string(e.what()).find("received no gradient in this backward: decoder.spare"), std::string::npos)
        << e.what();
  }
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
}

}  // namespace
}  // namespace cmaf::test
