// bfloat16 as it travels between ranks: the 16-bit patterns of at::BFloat16 (the upper half of
// an IEEE float32). These loops are what the MPI backend reduces bf16 tensors with (MPI has no
// bf16 type) and what the bucketed reducer packs gradients with. Rounding is to nearest even,
// bit for bit as ATen rounds float to bf16 (c10::BFloat16), and a NaN stays a NaN (0x7FC0), so a
// bf16 tensor reduced here equals the same arithmetic done with ATen's bf16 tensors.
#pragma once

#include <cstdint>
#include <cstring>

namespace cmaf::cluster {

inline float float_from_bf16(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

// Branch-free (so the loops below vectorise): add 0x7FFF plus the lowest kept bit, truncate.
inline uint16_t bf16_from_float(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
  return static_cast<uint16_t>(nan ? 0x7FC0u : rounded);
}

// inout[i] = bf16(float(in[i]) + float(inout[i])): one rounding per partial sum, as NCCL does.
void bf16_sum_into(const uint16_t* in, uint16_t* inout, int64_t count);
// inout[i] = the larger of in[i] and inout[i]; a NaN on either side gives NaN (as at::maximum).
void bf16_max_into(const uint16_t* in, uint16_t* inout, int64_t count);
// out[i] = bf16(in[i] * scale): one pass, one rounding (the reducer's 1/size before the sum).
void scaled_to_bf16(const float* in, float scale, uint16_t* out, int64_t count);

}  // namespace cmaf::cluster
