#include "model/model_info.h"

#include <gtest/gtest.h>

#include "tests/model/param_formulas.h"

namespace cmaf::model {
namespace {

TEST(ModelInfo, BlocksSumToTheModelAndShapesFollowTheForwardTable) {
  Cmaformer model(preset_config("tiny"));
  const ModelInfo info = describe_model(*model, 64, 96, 2);
  int64_t parameters = 0;
  for (const BlockInfo& b : info.blocks) parameters += b.parameters;
  EXPECT_EQ(parameters, info.parameters);
  EXPECT_EQ(info.parameters, test::cmaformer_parameters(preset_config("tiny")));
  EXPECT_EQ(info.output_shape, (std::vector<int64_t>{2, 9, 64, 96}));
  EXPECT_EQ(info.blocks.front().output_shape, (std::vector<int64_t>{4, 64, 96}));
  EXPECT_EQ(info.blocks[9].name, "bottleneck");
  EXPECT_EQ(info.blocks[9].output_shape, (std::vector<int64_t>{32, 2, 3}));
}

TEST(ModelInfo, HeadFlopsByHandAndFlopsScaleWithPixels) {
  Cmaformer model(preset_config("tiny"));
  const ModelInfo small = describe_model(*model, 64, 64);
  const ModelInfo large = describe_model(*model, 128, 128);
  // head: Conv1x1(F0 = 4 -> 9): 2 * 36 weights * 64 * 64 pixels.
  EXPECT_DOUBLE_EQ(small.blocks.back().flops, 2.0 * 36 * 64 * 64);
  // Convolutions scale with pixels (x4); attention with pixels^2: the total grows 4x to 4.1x.
  EXPECT_GT(large.flops / small.flops, 3.99);
  EXPECT_LT(large.flops / small.flops, 4.2);
}

TEST(ModelInfo, PaperPresetMatchesThePublishedSize) {
  Cmaformer model(preset_config("paper"));
  const ModelInfo info = describe_model(*model, 512, 512);
  EXPECT_NEAR(static_cast<double>(info.parameters), 47.7e6, 0.05e6);
  // METHOD.md: about 131 GFLOP per 512 x 512 forward.
  EXPECT_NEAR(info.flops / 1e9, 131.0, 3.0);
  EXPECT_NE(info.to_text(1).find("47.7 M"), std::string::npos);
}

}  // namespace
}  // namespace cmaf::model
