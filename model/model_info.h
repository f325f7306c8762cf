// Size and cost of a CMAformer, computed from its layers (not from a profiler):
// parameters per block, forward FLOPs, an activation-memory estimate and the output shape.
//
// FLOPs count multiply-adds as 2 of convolutions (2 * weight elements * output pixels),
// linear layers (2 * weight elements * rows) and attention (projections plus QK^T and AV,
// 4 * N^2 * E); normalisation, activations, pooling and upsampling are left out (< 1 %).
// Activation memory: the tensors a training forward keeps for backward, estimated as three
// maps per convolution (conv output, normalised, activated) and four token tensors per linear
// layer, plus the attention matrices; an estimate, stated as such.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/cmaformer.h"

namespace cmaf::model {

struct BlockInfo {
  std::string name;
  int64_t parameters = 0;
  double flops = 0.0;  // one sample
  int64_t activation_bytes = 0;  // one sample, fp32
  std::vector<int64_t> output_shape;  // [C, h, w] of one sample ([N, C] for token blocks)
};

struct ModelInfo {
  std::vector<BlockInfo> blocks;
  int64_t parameters = 0;
  double flops = 0.0;            // one sample
  int64_t activation_bytes = 0;  // one sample, fp32
  std::vector<int64_t> output_shape;  // [B, classes, H, W]
  std::string to_text(int64_t batch) const;
};

ModelInfo describe_model(CmaformerImpl& model, int64_t height, int64_t width, int64_t batch = 1);

}  // namespace cmaf::model
