// The bf16 loops the MPI backend reduces with and the bucketed reducer packs with: bit for bit
// what ATen's own bf16 arithmetic gives, specials included.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "cluster/bf16_wire.h"

namespace cmaf::test {
namespace {

using cluster::bf16_max_into;
using cluster::bf16_sum_into;
using cluster::scaled_to_bf16;

const uint16_t* bits(const at::Tensor& bf16) {
  return reinterpret_cast<const uint16_t*>(bf16.data_ptr());
}
uint16_t* bits(at::Tensor& bf16) {
  return reinterpret_cast<uint16_t*>(bf16.data_ptr());
}
// Same bits, except that any NaN equals any NaN (ATen's vectorised conversion writes 0xFFFF, its
// scalar one 0x7FC0, as ours does).
bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor a_nan = a.to(at::kFloat).isnan();
  const at::Tensor b_nan = b.to(at::kFloat).isnan();
  const at::Tensor keep = a_nan.logical_not();
  return torch::equal(a_nan, b_nan) && torch::equal(a.view(at::kShort).masked_select(keep),
                                                    b.view(at::kShort).masked_select(keep));
}

// Random values over many magnitudes and signs, then the cases rounding gets wrong most easily.
at::Tensor awkward_floats(uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  at::Tensor x =
      at::randn({4093}, g) * at::pow(10.0, at::randint(-30, 30, {4093}, g).to(at::kFloat));
  const float inf = std::numeric_limits<float>::infinity();
  const float specials[] = {0.0f,
                            -0.0f,
                            1.0f,
                            inf,
                            -inf,
                            std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::denorm_min(),
                            1.00390625f /* halfway between two bf16, even below */,
                            1.01171875f /* halfway, even above */,
                            -3.0e-39f};
  const at::Tensor s = at::tensor(std::vector<float>(std::begin(specials), std::end(specials)));
  return at::cat({x, s});
}

TEST(Bf16Wire, RoundingIsAtensBitForBit) {
  const at::Tensor x = awkward_floats(1);
  at::Tensor ours = at::empty(x.sizes(), at::kBFloat16);
  scaled_to_bf16(x.data_ptr<float>(), 1.0f, bits(ours), x.numel());
  EXPECT_TRUE(same_bits(ours, x.to(at::kBFloat16)));
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float unpacked = cluster::float_from_bf16(bits(ours)[i]);
    const float aten = static_cast<float>(ours[i].item<at::BFloat16>());
    EXPECT_TRUE(unpacked == aten || (std::isnan(unpacked) && std::isnan(aten)))
        << unpacked << " vs " << aten;
  }
}

TEST(Bf16Wire, ScaledPackingIsOneRoundingOfTheProduct) {
  const at::Tensor x = awkward_floats(2);
  for (float scale : {0.5f, 1.0f / 3.0f, 0.25f}) {
    at::Tensor ours = at::empty(x.sizes(), at::kBFloat16);
    scaled_to_bf16(x.data_ptr<float>(), scale, bits(ours), x.numel());
    EXPECT_TRUE(same_bits(ours, (x * scale).to(at::kBFloat16))) << "scale " << scale;
  }
}

TEST(Bf16Wire, SumIsFp32AdditionRoundedOnce) {
  const at::Tensor a = awkward_floats(3).to(at::kBFloat16);
  const at::Tensor b = awkward_floats(4).to(at::kBFloat16);
  at::Tensor inout = b.clone();
  bf16_sum_into(bits(a), bits(inout), a.numel());
  EXPECT_TRUE(same_bits(inout, (a.to(at::kFloat) + b.to(at::kFloat)).to(at::kBFloat16)));
  // Commutative, bit for bit: the ranks of an all-reduce may apply it in either order.
  at::Tensor swapped = a.clone();
  bf16_sum_into(bits(b), bits(swapped), a.numel());
  EXPECT_TRUE(same_bits(inout, swapped));
  EXPECT_EQ(bits(inout)[a.numel() - 6], 0x7FC0);  // NaN + anything: the quiet NaN
}

TEST(Bf16Wire, MaxIsAtMaximumNanIncluded) {
  const at::Tensor a = awkward_floats(5).to(at::kBFloat16);
  const at::Tensor b = awkward_floats(6).to(at::kBFloat16);
  at::Tensor inout = b.clone();
  bf16_max_into(bits(a), bits(inout), a.numel());
  const at::Tensor expected = at::maximum(a.to(at::kFloat), b.to(at::kFloat)).to(at::kBFloat16);
  // +0 vs -0 may come out either way in both; compare values, NaN by position.
  EXPECT_TRUE(torch::equal(inout.to(at::kFloat).isnan(), expected.to(at::kFloat).isnan()));
  const at::Tensor finite = expected.to(at::kFloat).isnan().logical_not();
  EXPECT_TRUE(torch::equal(inout.to(at::kFloat).masked_select(finite),
                           expected.to(at::kFloat).masked_select(finite)));
}

}  // namespace
}  // namespace cmaf::test
