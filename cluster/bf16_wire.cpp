#include "cluster/bf16_wire.h"

namespace cmaf::cluster {

void bf16_sum_into(const uint16_t* in, uint16_t* inout, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    inout[i] = bf16_from_float(float_from_bf16(in[i]) + float_from_bf16(inout[i]));
}

void bf16_max_into(const uint16_t* in, uint16_t* inout, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float a = float_from_bf16(in[i]);
    const float b = float_from_bf16(inout[i]);
    // a != a: a is NaN. Written out so that the comparison, not std::isnan, decides.
    inout[i] = (a != a || a > b) ? in[i] : inout[i];
  }
}

void scaled_to_bf16(const float* in, float scale, uint16_t* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = bf16_from_float(in[i] * scale);
}

}  // namespace cmaf::cluster
