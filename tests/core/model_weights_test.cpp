#include "core/model_weights.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "common/error.h"
#include "tests/temp_dir.h"

namespace cmaf::core {
namespace {

TEST(ModelWeights, SaveLoadRoundTripGivesTheSameLogits) {
  test::TempDir dir;
  torch::manual_seed(1);
  model::Cmaformer a(model::preset_config("tiny"));
  a->train();
  a->forward(torch::randn({2, 1, 64, 64}));  // move the BN running statistics off their init
  a->eval();
  save_weights(*a, dir.file("w.pt"));
  torch::manual_seed(2);
  model::Cmaformer b(model::preset_config("tiny"));
  b->eval();
  load_weights(*b, dir.file("w.pt"));
  const torch::Tensor x = torch::randn({1, 1, 64, 64});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
  EXPECT_EQ(read_weights_config(dir.file("w.pt")).to_json(), a->config().to_json());
}

TEST(ModelWeights, OtherClassCountNamesTheParameterAndBothShapes) {
  test::TempDir dir;
  model::Cmaformer nine(model::preset_config("tiny"));
  save_weights(*nine, dir.file("w.pt"));
  model::CmaformerConfig config = model::preset_config("tiny");
  config.classes = 3;
  model::Cmaformer three(config);
  const torch::Tensor before = three->named_parameters()["stem.conv1.weight"].clone();
  try {
    load_weights(*three, dir.file("w.pt"));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "head.weight");
    EXPECT_NE(std::string(e.what()).find("[9, 4, 1, 1] in the file, [3, 4, 1, 1] in the model"),
              std::string::npos) << e.what();
  }
  // Nothing was copied: the check runs before any tensor is touched.
  EXPECT_TRUE(torch::equal(three->named_parameters()["stem.conv1.weight"], before));
}

TEST(ModelWeights, OtherPresetAndGarbageFilesAreRefused) {
  test::TempDir dir;
  model::Cmaformer tiny(model::preset_config("tiny"));
  save_weights(*tiny, dir.file("w.pt"));
  model::Cmaformer quarter(model::preset_config("quarter"));
  try {
    load_weights(*quarter, dir.file("w.pt"));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("file preset 'tiny', model preset 'quarter'"), std::string::npos)
        << e.what();
  }
  std::ofstream(dir.file("junk.pt")) << "junk";
  EXPECT_THROW(load_weights(*tiny, dir.file("junk.pt")), InputError);
  EXPECT_THROW(load_weights(*tiny, dir.file("missing.pt")), InputError);
}

}  // namespace
}  // namespace cmaf::core
