// The bottleneck transformer (METHOD.md section 1): encoder and cross-attention decoder layers,
// and the token <-> map conversion.
//
// Tokens are sequence-first, [N, B, E] (LibTorch 1.13's MultiheadAttention takes (L, N, E)), so
// attention mixes the N spatial tokens of each sample and never the samples of a batch.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

namespace cmaf::model {

// [B, C, h, w] -> [h*w, B, C] (token n = row-major position y * w + x).
torch::Tensor map_to_tokens(const torch::Tensor& map);
// [h*w, B, C] -> [B, C, h, w]; checks that the token count is h * w.
torch::Tensor tokens_to_map(const torch::Tensor& tokens, int64_t height, int64_t width);

struct TransformerLayerOptions {
  int64_t width = 512;
  int64_t heads = 8;
  int64_t ffn_ratio = 4;
  double dropout = 0.0;
};

// What both layer kinds are made of: attention, two LayerNorms, an FFN (Linear-GELU-Linear,
// width x ffn_ratio hidden), dropout.
class TransformerLayerBase : public torch::nn::Module {
 protected:
  explicit TransformerLayerBase(const TransformerLayerOptions& options);
  torch::Tensor attend(const torch::Tensor& query, const torch::Tensor& key_value);
  torch::Tensor feed_forward(const torch::Tensor& x);

  torch::nn::MultiheadAttention attention_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Linear ffn_in_{nullptr}, ffn_out_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};

// q = LN1(x); a = MHA(q, k=x, v=x); z = a + q; w = LN2(z); out = FFN(w) + w.
// LayerNorm on the query only, as released.
class EncoderLayerImpl : public TransformerLayerBase {
 public:
  explicit EncoderLayerImpl(const TransformerLayerOptions& options) : TransformerLayerBase(options) {}
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(EncoderLayer);

// a = MHA(q=x, k=e, v=e); q = LN1(a + x); out = LN2(FFN(q) + q); e is the encoder output.
class DecoderLayerImpl : public TransformerLayerBase {
 public:
  explicit DecoderLayerImpl(const TransformerLayerOptions& options) : TransformerLayerBase(options) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& encoded);
};
TORCH_MODULE(DecoderLayer);

}  // namespace cmaf::model
