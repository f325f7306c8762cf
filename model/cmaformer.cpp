#include "model/cmaformer.h"

#include <ATen/ATen.h>

#include "common/error.h"

namespace cmaf::model {
namespace {

torch::Tensor upsample(const torch::Tensor& x, int64_t factor) {
  // In fp32 even under bf16 autocast: LibTorch 1.13's bf16 CPU kernel for the backward of
  // bilinear upsampling is ~6x slower than the fp32 one (BENCHMARKS.md, bf16 on small presets).
  const bool reduced = x.scalar_type() == at::kBFloat16;
  const torch::Tensor y = at::upsample_bilinear2d(reduced ? x.to(at::kFloat) : x,
                                                  {x.size(2) * factor, x.size(3) * factor}, /*align_corners=*/false);
  return reduced ? y.to(at::kBFloat16) : y;
}

}  // namespace

StemImpl::StemImpl(int64_t in, int64_t out) {
  conv1_ = register_module("conv1", conv3x3(in, out));
  bn_ = register_module("bn", batch_norm(out));
  conv2_ = register_module("conv2", conv3x3(out, out));
  skip_ = register_module("skip", conv3x3(in, out));
}

torch::Tensor StemImpl::forward(const torch::Tensor& x) {
  return conv2_(at::relu(bn_(conv1_(x)))) + skip_(x);
}

std::vector<std::string> CmaformerImpl::block_names() {
  return {"stem",    "embed1", "channel1", "down1",  "embed2", "channel2", "down2",
          "embed3",  "channel3", "bottleneck", "encoder", "bridge", "decoder", "gate1",
          "up1",     "gate2",  "up2",      "gate3",  "up3",    "head_aspp", "head"};
}

CmaformerImpl::CmaformerImpl(CmaformerConfig config) : config_(std::move(config)) {
  config_.validate();
  const auto& f = config_.widths;
  stem_ = register_module("stem", Stem(config_.in_channels, f[0]));
  embed1_ = register_module("embed1", PatchEmbed(f[0], f[1]));
  channel1_ = register_module("channel1", ChannelAttention(f[1]));
  down1_ = register_module("down1", ResidualConv(f[1], f[2], 2));
  embed2_ = register_module("embed2", PatchEmbed(f[2], f[3]));
  channel2_ = register_module("channel2", ChannelAttention(f[3]));
  down2_ = register_module("down2", ResidualConv(f[3], f[4], 2));
  embed3_ = register_module("embed3", PatchEmbed(f[4], f[5]));
  channel3_ = register_module("channel3", ChannelAttention(f[5]));
  bottleneck_ = register_module("bottleneck", ResidualConv(f[5], f[5], 1));

  const TransformerLayerOptions layer{f[5], config_.heads, config_.ffn_ratio, config_.dropout};
  encoder_ = register_module("encoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.encoder_layers; ++i) encoder_->push_back(EncoderLayer(layer));
  bridge_ = register_module("bridge", Aspp(f[5], f[5]));
  decoder_ = register_module("decoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.decoder_layers; ++i) decoder_->push_back(DecoderLayer(layer));

  gate1_ = register_module("gate1", AttentionGate(f[5], f[5], f[5], config_.gate_sigmoid));
  up1_ = register_module("up1", ResidualConv(f[5] + f[4], f[4], 1));
  gate2_ = register_module("gate2", AttentionGate(f[4], f[4], f[4], config_.gate_sigmoid));
  up2_ = register_module("up2", ResidualConv(f[4] + f[2], f[3], 1));
  gate3_ = register_module("gate3", AttentionGate(f[2], f[3], f[3], config_.gate_sigmoid));
  up3_ = register_module("up3", ResidualConv(f[3] + f[0], f[1], 1));
  head_aspp_ = register_module("head_aspp", Aspp(f[1], f[0]));
  head_ = register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(f[0], config_.classes, 1)));
}

CmaformerOutput CmaformerImpl::forward_features(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(1) != config_.in_channels) {
    throw InputError("input", str("shape ", x.sizes()),
                     str("expected [B, ", config_.in_channels, ", H, W]"));
  }
  check_input_size(x.size(2), x.size(3));
  const torch::Tensor x1 = stem_(x);                                 // F0 x H
  const torch::Tensor x2 = down1_(channel1_(embed1_(x1)));           // F2 x H/4
  const torch::Tensor x3 = down2_(channel2_(embed2_(x2)));           // F4 x H/16
  const torch::Tensor x4 = bottleneck_(channel3_(embed3_(x3)));      // F5 x H/32
  const int64_t h = x4.size(2);
  const int64_t w = x4.size(3);

  torch::Tensor encoded = map_to_tokens(x4);  // [h*w, B, F5]
  for (const auto& layer : *encoder_) encoded = layer->as<EncoderLayer>()->forward(encoded);
  torch::Tensor tokens = map_to_tokens(bridge_(tokens_to_map(encoded, h, w)));
  for (const auto& layer : *decoder_) tokens = layer->as<DecoderLayer>()->forward(tokens, encoded);
  const torch::Tensor x5 = tokens_to_map(tokens, h, w);            // F5 x H/32

  const torch::Tensor x6 = up1_(at::cat({upsample(gate1_(x4, x5), 2), x3}, 1));  // F4 x H/16
  const torch::Tensor x7 = up2_(at::cat({upsample(gate2_(x3, x6), 4), x2}, 1));  // F3 x H/4
  const torch::Tensor x8 = up3_(at::cat({upsample(gate3_(x2, x7), 4), x1}, 1));  // F1 x H
  return {head_(head_aspp_(x8)), x8};
}

torch::Device module_device(const torch::nn::Module& module) {
  const auto parameters = module.parameters();
  return parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
}

torch::Tensor CmaformerImpl::probabilities(const torch::Tensor& logits) const {
  return config_.output_mode == OutputMode::kSoftmax ? at::softmax(logits, 1) : at::sigmoid(logits);
}

}  // namespace cmaf::model
