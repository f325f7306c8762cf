#include "model/model_config.h"

#include "common/error.h"

namespace cmaf::model {
namespace {

CmaformerConfig scaled(const std::string& name, int64_t divisor, int64_t input_size) {
  CmaformerConfig c;
  c.preset = name;
  for (int64_t& w : c.widths) w /= divisor;
  c.input_size = input_size;
  return c;
}

}  // namespace

std::vector<std::string> preset_names() { return {"paper", "half", "quarter", "tiny"}; }

CmaformerConfig preset_config(const std::string& name) {
  if (name == "paper") return CmaformerConfig{};
  if (name == "half") return scaled(name, 2, 256);
  if (name == "quarter") return scaled(name, 4, 224);
  if (name == "tiny") {
    CmaformerConfig c;
    c.preset = name;
    c.widths = {4, 8, 8, 16, 16, 32};
    c.heads = 4;
    c.encoder_layers = 1;
    c.decoder_layers = 1;
    c.ffn_ratio = 2;
    c.input_size = 64;
    return c;
  }
  std::string known;
  for (const std::string& p : preset_names()) known += (known.empty() ? "" : ", ") + p;
  throw InputError("--preset", "", str("'", name, "' is not a preset, expected one of ", known));
}

std::string to_string(OutputMode mode) { return mode == OutputMode::kSoftmax ? "softmax" : "sigmoid"; }

OutputMode output_mode_from_string(const std::string& text) {
  if (text == "softmax") return OutputMode::kSoftmax;
  if (text == "sigmoid") return OutputMode::kSigmoid;
  throw InputError("--output-mode", "", str("'", text, "', expected softmax or sigmoid"));
}

void check_input_size(int64_t height, int64_t width) {
  if (height < kDownsampling || width < kDownsampling || height % kDownsampling != 0 ||
      width % kDownsampling != 0) {
    throw InputError("input", str(height, " x ", width),
                     str("CMAformer downsamples by ", kDownsampling,
                         ": height and width must be positive multiples of ", kDownsampling,
                         " (e.g. 224, 256, 512)"));
  }
}

void CmaformerConfig::validate() const {
  auto fail = [](const std::string& field, const std::string& rule) {
    throw InputError("model config", field, rule);
  };
  if (in_channels < 1) fail("in_channels", str(in_channels, ", expected >= 1"));
  if (classes < 1 || classes > 256) fail("classes", str(classes, ", expected 1..256"));
  for (int64_t w : widths) {
    if (w < 1) fail("widths", "every width must be >= 1");
  }
  if (heads < 1 || widths[5] % heads != 0) {
    fail("heads", str(heads, " must divide the bottleneck width ", widths[5]));
  }
  if (encoder_layers < 1 || decoder_layers < 1) fail("encoder_layers", "expected >= 1 layer each");
  if (ffn_ratio < 1) fail("ffn_ratio", str(ffn_ratio, ", expected >= 1"));
  if (!(dropout >= 0.0 && dropout < 1.0)) fail("dropout", str(dropout, ", expected [0, 1)"));
  check_input_size(input_size, input_size);
}

nlohmann::json CmaformerConfig::to_json() const {
  return {{"preset", preset},           {"in_channels", in_channels},
          {"classes", classes},         {"widths", widths},
          {"heads", heads},             {"encoder_layers", encoder_layers},
          {"decoder_layers", decoder_layers}, {"ffn_ratio", ffn_ratio},
          {"dropout", dropout},         {"gate_sigmoid", gate_sigmoid},
          {"output_mode", to_string(output_mode)}, {"input_size", input_size}};
}

CmaformerConfig CmaformerConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  try {
    CmaformerConfig c;
    c.preset = j.at("preset").get<std::string>();
    c.in_channels = j.at("in_channels").get<int64_t>();
    c.classes = j.at("classes").get<int64_t>();
    c.widths = j.at("widths").get<std::array<int64_t, 6>>();
    c.heads = j.at("heads").get<int64_t>();
    c.encoder_layers = j.at("encoder_layers").get<int64_t>();
    c.decoder_layers = j.at("decoder_layers").get<int64_t>();
    c.ffn_ratio = j.at("ffn_ratio").get<int64_t>();
    c.dropout = j.at("dropout").get<double>();
    c.gate_sigmoid = j.at("gate_sigmoid").get<bool>();
    c.output_mode = output_mode_from_string(j.at("output_mode").get<std::string>());
    c.input_size = j.at("input_size").get<int64_t>();
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(origin, "model config", str("not a CMAformer configuration: ", e.what()));
  }
}

}  // namespace cmaf::model
