// CMAformer weights on disk, in LibTorch's own archive format (torch::serialize), with the
// model configuration stored beside the tensors as JSON.
//
// Loading checks every parameter and buffer by name and shape before copying anything: a file
// of another preset or class count fails with the first mismatching tensor and both shapes, and
// the model is left untouched.
#pragma once

#include <string>

#include "model/cmaformer.h"

namespace cmaf::core {

inline constexpr const char* kConfigKey = "cmaformer_config";

// Atomic (temporary name, fsync, rename).
void save_weights(model::CmaformerImpl& model, const std::string& path);

// The configuration stored in a weights file.
model::CmaformerConfig read_weights_config(const std::string& path);

void load_weights(model::CmaformerImpl& model, const std::string& path);

}  // namespace cmaf::core
