// Configuration of the CMAformer network (METHOD.md section 1) and its named presets.
//
// Presets are values of this one struct: `paper` is the published setting; `half` and `quarter`
// divide the widths for 2-core CPU training; `tiny` is for tests. Every field has a named
// default and a command-line/INI name (model-info --preset, later train --preset).
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cmaf::model {

inline constexpr int64_t kDownsampling = 32;  // H and W must be multiples of this
inline constexpr double kBatchNormEps = 1e-5;
inline constexpr double kBatchNormMomentum = 0.1;
inline constexpr double kPatchNormEps = 1e-6;        // PatchEmbed's LayerNorm
inline constexpr double kTransformerNormEps = 1e-5;  // encoder/decoder LayerNorms
// Squeeze-excitation hidden width: max(1, C / 16) (the max only matters below 16 channels).
inline constexpr int64_t kSqueezeReduction = 16;
inline constexpr std::array<int64_t, 3> kAsppDilations{6, 12, 18};

// How logits are read: softmax over classes (default), or an independent sigmoid per channel
// as in the released training code.
enum class OutputMode { kSoftmax, kSigmoid };

struct CmaformerConfig {
  std::string preset = "paper";
  int64_t in_channels = 1;
  int64_t classes = 9;  // Synapse: background + 8 organs
  std::array<int64_t, 6> widths{16, 32, 64, 128, 256, 512};
  int64_t heads = 8;
  int64_t encoder_layers = 3;
  int64_t decoder_layers = 3;
  int64_t ffn_ratio = 4;
  double dropout = 0.0;
  bool gate_sigmoid = false;  // the released attention gate has none
  OutputMode output_mode = OutputMode::kSoftmax;
  int64_t input_size = 512;  // training resolution (any multiple of 32 runs)

  // Throws InputError naming the field and the rule it breaks.
  void validate() const;
  nlohmann::json to_json() const;
  static CmaformerConfig from_json(const nlohmann::json& json, const std::string& origin);
};

std::vector<std::string> preset_names();
// Throws InputError listing the known presets.
CmaformerConfig preset_config(const std::string& name);

std::string to_string(OutputMode mode);
OutputMode output_mode_from_string(const std::string& text);

// Throws InputError "input H x W: ... must be divisible by 32" for unusable sizes.
void check_input_size(int64_t height, int64_t width);

}  // namespace cmaf::model
