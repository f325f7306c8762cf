// The convolutional building blocks of CMAformer (METHOD.md section 1), one module each.
// Every convolution of a block runs at the block's output resolution (model_info relies on it).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "model/batch_norm.h"

namespace cmaf::model {

// Pre-activation residual block (ResUNet++): main = BN-ReLU-Conv3x3(stride)-BN-ReLU-Conv3x3,
// skip = Conv3x3(stride)-BN, out = main + skip (no activation after the sum).
class ResidualConvImpl : public torch::nn::Module {
 public:
  ResidualConvImpl(int64_t in, int64_t out, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, skip_bn_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, skip_conv_{nullptr};
};
TORCH_MODULE(ResidualConv);

// Squeeze-excitation: GAP -> Linear(C, C/16) -> ReLU -> Linear(C/16, C) -> sigmoid -> scale.
class ChannelAttentionImpl : public torch::nn::Module {
 public:
  explicit ChannelAttentionImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear squeeze_{nullptr}, excite_{nullptr};
};
TORCH_MODULE(ChannelAttention);

// ASPP ("spatial attention" in the released code): Conv3x3 dilation 6/12/18, each -> ReLU -> BN,
// concatenated, Conv1x1(3 * out -> out).
class AsppImpl : public torch::nn::Module {
 public:
  AsppImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::vector<torch::nn::Conv2d> branch_convs_;
  std::vector<BatchNorm2d> branch_norms_;
  torch::nn::Conv2d project_{nullptr};
};
TORCH_MODULE(Aspp);

// Pixel attention (positional encoding): x * sigmoid(DepthwiseConv3x3(x)).
class PixelAttentionImpl : public torch::nn::Module {
 public:
  explicit PixelAttentionImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d depthwise_{nullptr};
};
TORCH_MODULE(PixelAttention);

// Channel-aware patch embedding: Conv3x3 stride 2 -> PixelAttention -> LayerNorm over channels
// (eps 1e-6) of the tokens, returned as a map [B, out, H/2, W/2].
class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d project_{nullptr};
  PixelAttention position_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
};
TORCH_MODULE(PatchEmbed);

// Attention gate on a skip: g = Conv3x3(ReLU(BN(x_enc))) + Conv3x3(ReLU(BN(x_dec)));
// a = Conv1x1(ReLU(BN(g))) -> 1 channel (optionally sigmoid); returns a * x_dec.
class AttentionGateImpl : public torch::nn::Module {
 public:
  AttentionGateImpl(int64_t encoder_channels, int64_t decoder_channels, int64_t out, bool sigmoid);
  torch::Tensor forward(const torch::Tensor& encoder, const torch::Tensor& decoder);

 private:
  BatchNorm2d encoder_bn_{nullptr}, decoder_bn_{nullptr}, attention_bn_{nullptr};
  torch::nn::Conv2d encoder_conv_{nullptr}, decoder_conv_{nullptr}, attention_conv_{nullptr};
  bool sigmoid_;
};
TORCH_MODULE(AttentionGate);

// LayerNorm computed in fp32 whatever the input dtype. LibTorch 1.13's CPU layer_norm has no
// kernel for a bf16 input with fp32 weights and CPU autocast does not cast it, so under bf16
// autocast every LayerNorm goes through here (fp32 normalisation is what autocast does on CUDA).
torch::Tensor layer_norm_fp32(torch::nn::LayerNorm& norm, const torch::Tensor& x);

// Conv3x3 with padding 1 and BatchNorm2d with the method's eps/momentum: the common pieces.
torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t dilation = 1);
BatchNorm2d batch_norm(int64_t channels);  // method eps / momentum; syncable (batch_norm.h)

}  // namespace cmaf::model
