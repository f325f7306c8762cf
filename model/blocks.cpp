#include "model/blocks.h"

#include <ATen/ATen.h>

#include "model/model_config.h"

namespace cmaf::model {

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride, int64_t dilation) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3)
                               .stride(stride)
                               .padding(dilation)
                               .dilation(dilation));
}

BatchNorm2d batch_norm(int64_t channels) { return BatchNorm2d(channels, kBatchNormEps, kBatchNormMomentum); }

torch::Tensor layer_norm_fp32(torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  return norm(x.scalar_type() == at::kFloat ? x : x.to(at::kFloat));
}

ResidualConvImpl::ResidualConvImpl(int64_t in, int64_t out, int64_t stride) {
  bn1_ = register_module("bn1", batch_norm(in));
  conv1_ = register_module("conv1", conv3x3(in, out, stride));
  bn2_ = register_module("bn2", batch_norm(out));
  conv2_ = register_module("conv2", conv3x3(out, out));
  skip_conv_ = register_module("skip_conv", conv3x3(in, out, stride));
  skip_bn_ = register_module("skip_bn", batch_norm(out));
}

torch::Tensor ResidualConvImpl::forward(const torch::Tensor& x) {
  const torch::Tensor main = conv2_(at::relu(bn2_(conv1_(at::relu(bn1_(x))))));
  return main + skip_bn_(skip_conv_(x));
}

ChannelAttentionImpl::ChannelAttentionImpl(int64_t channels) {
  const int64_t hidden = std::max<int64_t>(1, channels / kSqueezeReduction);
  squeeze_ = register_module("squeeze", torch::nn::Linear(torch::nn::LinearOptions(channels, hidden).bias(false)));
  excite_ = register_module("excite", torch::nn::Linear(torch::nn::LinearOptions(hidden, channels).bias(false)));
}

torch::Tensor ChannelAttentionImpl::forward(const torch::Tensor& x) {
  const torch::Tensor pooled = x.mean({2, 3});  // [B, C]
  const torch::Tensor weights = at::sigmoid(excite_(at::relu(squeeze_(pooled))));
  return x * weights.unsqueeze(-1).unsqueeze(-1);
}

AsppImpl::AsppImpl(int64_t in, int64_t out) {
  for (size_t i = 0; i < kAsppDilations.size(); ++i) {
    branch_convs_.push_back(register_module("conv" + std::to_string(i), conv3x3(in, out, 1, kAsppDilations[i])));
    branch_norms_.push_back(register_module("bn" + std::to_string(i), batch_norm(out)));
  }
  project_ = register_module(
      "project", torch::nn::Conv2d(torch::nn::Conv2dOptions(out * static_cast<int64_t>(kAsppDilations.size()), out, 1)));
}

torch::Tensor AsppImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> branches;
  for (size_t i = 0; i < branch_convs_.size(); ++i) {
    branches.push_back(branch_norms_[i](at::relu(branch_convs_[i](x))));  // ReLU then BN, as released
  }
  return project_(at::cat(branches, 1));
}

PixelAttentionImpl::PixelAttentionImpl(int64_t channels) {
  depthwise_ = register_module(
      "depthwise", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 3).padding(1).groups(channels)));
}

torch::Tensor PixelAttentionImpl::forward(const torch::Tensor& x) { return x * at::sigmoid(depthwise_(x)); }

PatchEmbedImpl::PatchEmbedImpl(int64_t in, int64_t out) {
  project_ = register_module("project", conv3x3(in, out, 2));
  position_ = register_module("position", PixelAttention(out));
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({out}).eps(kPatchNormEps)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& x) {
  const torch::Tensor map = position_(project_(x));
  // LayerNorm over the channels of each token = over dim 1 of the map: permute to channels-last,
  // normalise, permute back (no reshape needed, so any H, W works).
  return layer_norm_fp32(norm_, map.permute({0, 2, 3, 1})).permute({0, 3, 1, 2});
}

AttentionGateImpl::AttentionGateImpl(int64_t encoder_channels, int64_t decoder_channels, int64_t out,
                                     bool sigmoid)
    : sigmoid_(sigmoid) {
  encoder_bn_ = register_module("encoder_bn", batch_norm(encoder_channels));
  encoder_conv_ = register_module("encoder_conv", conv3x3(encoder_channels, out));
  decoder_bn_ = register_module("decoder_bn", batch_norm(decoder_channels));
  decoder_conv_ = register_module("decoder_conv", conv3x3(decoder_channels, out));
  attention_bn_ = register_module("attention_bn", batch_norm(out));
  attention_conv_ = register_module("attention_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(out, 1, 1)));
}

torch::Tensor AttentionGateImpl::forward(const torch::Tensor& encoder, const torch::Tensor& decoder) {
  const torch::Tensor g = encoder_conv_(at::relu(encoder_bn_(encoder))) + decoder_conv_(at::relu(decoder_bn_(decoder)));
  torch::Tensor a = attention_conv_(at::relu(attention_bn_(g)));
  if (sigmoid_) a = at::sigmoid(a);
  return a * decoder;
}

}  // namespace cmaf::model
