// Whole-volume prediction, slice by slice: each slice resized to the network input (bilinear),
// softmax probabilities resized back to the slice's size (bilinear, align_corners false),
// optionally averaged with the prediction of the left-right flipped slice, argmax. The one code
// path of `cmaformer eval` and `cmaformer infer`.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "model/cmaformer.h"

namespace cmaf::core {

// image: D x H x W preprocessed intensities. Returns D x H x W label ids. The model is used in
// eval mode under no_grad.
std::vector<uint8_t> predict_volume(model::CmaformerImpl& model, const std::vector<float>& image,
                                    std::array<int64_t, 3> shape, int64_t batch, bool flip_tta);

}  // namespace cmaf::core
