// Parameter counts from the layer formulas, written independently of model/ so that a test can
// compare them with what the model registers.
#pragma once

#include <algorithm>
#include <cstdint>

#include "model/model_config.h"

namespace cmaf::test {

inline int64_t conv(int64_t in, int64_t out, int64_t k, int64_t groups = 1) {
  return k * k * (in / groups) * out + out;  // weights + bias
}
inline int64_t bn(int64_t c) { return 2 * c; }  // gamma, beta (running stats are buffers)
inline int64_t ln(int64_t c) { return 2 * c; }
inline int64_t linear(int64_t in, int64_t out, bool bias = true) { return in * out + (bias ? out : 0); }
inline int64_t mha(int64_t e) { return 3 * e * e + 3 * e + e * e + e; }  // in_proj + out_proj
inline int64_t residual(int64_t in, int64_t out) {
  return bn(in) + conv(in, out, 3) + bn(out) + conv(out, out, 3) + conv(in, out, 3) + bn(out);
}
inline int64_t squeeze_excite(int64_t c) {
  const int64_t hidden = std::max<int64_t>(1, c / 16);
  return linear(c, hidden, false) + linear(hidden, c, false);
}
inline int64_t aspp(int64_t in, int64_t out) { return 3 * (conv(in, out, 3) + bn(out)) + conv(3 * out, out, 1); }
inline int64_t patch_embed(int64_t in, int64_t out) { return conv(in, out, 3) + conv(out, out, 3, out) + ln(out); }
inline int64_t gate(int64_t e, int64_t d, int64_t o) {
  return bn(e) + conv(e, o, 3) + bn(d) + conv(d, o, 3) + bn(o) + conv(o, 1, 1);
}
inline int64_t transformer_layer(int64_t e, int64_t ratio) {
  return mha(e) + 2 * ln(e) + linear(e, ratio * e) + linear(ratio * e, e);
}

inline int64_t cmaformer_parameters(const model::CmaformerConfig& c) {
  const auto& f = c.widths;
  const int64_t stem = conv(c.in_channels, f[0], 3) + bn(f[0]) + conv(f[0], f[0], 3) + conv(c.in_channels, f[0], 3);
  const int64_t encoder_side = patch_embed(f[0], f[1]) + squeeze_excite(f[1]) + residual(f[1], f[2]) +
                               patch_embed(f[2], f[3]) + squeeze_excite(f[3]) + residual(f[3], f[4]) +
                               patch_embed(f[4], f[5]) + squeeze_excite(f[5]) + residual(f[5], f[5]);
  const int64_t transformer = (c.encoder_layers + c.decoder_layers) * transformer_layer(f[5], c.ffn_ratio) +
                              aspp(f[5], f[5]);
  const int64_t decoder_side = gate(f[5], f[5], f[5]) + residual(f[5] + f[4], f[4]) + gate(f[4], f[4], f[4]) +
                               residual(f[4] + f[2], f[3]) + gate(f[2], f[3], f[3]) +
                               residual(f[3] + f[0], f[1]) + aspp(f[1], f[0]) + conv(f[0], c.classes, 1);
  return stem + encoder_side + transformer + decoder_side;
}

}  // namespace cmaf::test
