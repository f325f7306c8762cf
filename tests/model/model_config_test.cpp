#include "model/model_config.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace cmaf::model {
namespace {

TEST(ModelConfig, PresetsAreValidValuesOfTheSameStruct) {
  for (const std::string& name : preset_names()) {
    const CmaformerConfig c = preset_config(name);
    EXPECT_EQ(c.preset, name);
    EXPECT_NO_THROW(c.validate()) << name;
  }
  EXPECT_EQ(preset_config("paper").widths, (std::array<int64_t, 6>{16, 32, 64, 128, 256, 512}));
  EXPECT_EQ(preset_config("half").widths[5], 256);
  EXPECT_EQ(preset_config("quarter").input_size, 224);
  EXPECT_THROW(preset_config("huge"), InputError);
}

TEST(ModelConfig, JsonRoundTrip) {
  CmaformerConfig c = preset_config("half");
  c.classes = 3;
  c.gate_sigmoid = true;
  c.output_mode = OutputMode::kSigmoid;
  EXPECT_EQ(CmaformerConfig::from_json(c.to_json(), "x").to_json(), c.to_json());
  EXPECT_THROW(CmaformerConfig::from_json({{"preset", "x"}}, "ckpt"), InputError);
}

TEST(ModelConfig, InvalidValuesNameTheField) {
  CmaformerConfig c;
  c.heads = 7;  // does not divide 512
  try {
    c.validate();
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.field(), "heads");
  }
  c = CmaformerConfig{};
  c.input_size = 500;
  EXPECT_THROW(c.validate(), InputError);
  EXPECT_THROW(check_input_size(64, 48), InputError);
  EXPECT_NO_THROW(check_input_size(64, 96));
}

}  // namespace
}  // namespace cmaf::model
