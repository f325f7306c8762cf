// The CMAformer network (METHOD.md section 1): ResUNet encoder with channel-aware patch
// embeddings, a transformer bottleneck (encoder + cross-attention decoder over the spatial
// tokens of each sample), attention-gated ResUNet decoder, ASPP head.
//
// Input [B, in_channels, H, W] with H, W multiples of 32; output logits [B, classes, H, W].
// Only modules that forward uses are registered: every parameter gets a gradient.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "model/blocks.h"
#include "model/model_config.h"
#include "model/transformer_layers.h"

namespace cmaf::model {

// Stem: Conv3x3(in->F0)-BN-ReLU-Conv3x3(F0->F0) + Conv3x3(in->F0).
class StemImpl : public torch::nn::Module {
 public:
  StemImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, skip_{nullptr};
  BatchNorm2d bn_{nullptr};
};
TORCH_MODULE(Stem);

struct CmaformerOutput {
  torch::Tensor logits;            // [B, classes, H, W]
  torch::Tensor decoder_features;  // [B, F1, H, W]: the decoder's last map, before the head ASPP
};

class CmaformerImpl : public torch::nn::Module {
 public:
  explicit CmaformerImpl(CmaformerConfig config);

  torch::Tensor forward(const torch::Tensor& x) { return forward_features(x).logits; }
  CmaformerOutput forward_features(const torch::Tensor& x);

  // Softmax over classes or per-channel sigmoid, as the configuration's output mode says.
  torch::Tensor probabilities(const torch::Tensor& logits) const;

  const CmaformerConfig& config() const { return config_; }

  // Top-level blocks in forward order (names as in named_parameters, e.g. "down1").
  static std::vector<std::string> block_names();

 private:
  CmaformerConfig config_;
  Stem stem_{nullptr};
  PatchEmbed embed1_{nullptr}, embed2_{nullptr}, embed3_{nullptr};
  ChannelAttention channel1_{nullptr}, channel2_{nullptr}, channel3_{nullptr};
  ResidualConv down1_{nullptr}, down2_{nullptr}, bottleneck_{nullptr};
  torch::nn::ModuleList encoder_{nullptr}, decoder_{nullptr};
  Aspp bridge_{nullptr}, head_aspp_{nullptr};
  AttentionGate gate1_{nullptr}, gate2_{nullptr}, gate3_{nullptr};
  ResidualConv up1_{nullptr}, up2_{nullptr}, up3_{nullptr};
  torch::nn::Conv2d head_{nullptr};
};
TORCH_MODULE(Cmaformer);

// Where a module's parameters live (CPU for a module without parameters): callers move their
// inputs there and results back.
torch::Device module_device(const torch::nn::Module& module);

}  // namespace cmaf::model
