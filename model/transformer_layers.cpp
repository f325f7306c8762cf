#include "model/transformer_layers.h"

#include <ATen/ATen.h>

#include "common/error.h"
#include "model/blocks.h"
#include "model/model_config.h"

namespace cmaf::model {

torch::Tensor map_to_tokens(const torch::Tensor& map) {
  CMAF_CHECK_EQ(map.dim(), 4, "map_to_tokens expects [B, C, h, w]");
  return map.flatten(2).permute({2, 0, 1});
}

torch::Tensor tokens_to_map(const torch::Tensor& tokens, int64_t height, int64_t width) {
  CMAF_CHECK_EQ(tokens.dim(), 3, "tokens_to_map expects [N, B, C]");
  CMAF_CHECK_EQ(tokens.size(0), height * width, "token count vs feature map ", height, "x", width);
  return tokens.permute({1, 2, 0}).reshape({tokens.size(1), tokens.size(2), height, width});
}

TransformerLayerBase::TransformerLayerBase(const TransformerLayerOptions& o) {
  attention_ = register_module(
      "attention", torch::nn::MultiheadAttention(
                       torch::nn::MultiheadAttentionOptions(o.width, o.heads).dropout(o.dropout)));
  const auto norm = torch::nn::LayerNormOptions({o.width}).eps(kTransformerNormEps);
  norm1_ = register_module("norm1", torch::nn::LayerNorm(norm));
  norm2_ = register_module("norm2", torch::nn::LayerNorm(norm));
  ffn_in_ = register_module("ffn_in", torch::nn::Linear(o.width, o.width * o.ffn_ratio));
  ffn_out_ = register_module("ffn_out", torch::nn::Linear(o.width * o.ffn_ratio, o.width));
  dropout_ = register_module("dropout", torch::nn::Dropout(o.dropout));
}

torch::Tensor TransformerLayerBase::attend(const torch::Tensor& query, const torch::Tensor& key_value) {
  // need_weights = false: only the output is used.
  return std::get<0>(attention_->forward(query, key_value, key_value, {}, false));
}

torch::Tensor TransformerLayerBase::feed_forward(const torch::Tensor& x) {
  return ffn_out_(at::gelu(ffn_in_(x)));
}

torch::Tensor EncoderLayerImpl::forward(const torch::Tensor& x) {
  const torch::Tensor q = layer_norm_fp32(norm1_, x);
  const torch::Tensor z = dropout_(attend(q, x)) + q;  // key/value: the un-normed x
  const torch::Tensor w = layer_norm_fp32(norm2_, z);
  return dropout_(feed_forward(w)) + w;
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& encoded) {
  const torch::Tensor q = dropout_(layer_norm_fp32(norm1_, attend(x, encoded) + x));
  return dropout_(layer_norm_fp32(norm2_, feed_forward(q) + q));
}

}  // namespace cmaf::model
