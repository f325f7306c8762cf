// Boundary-aware contrastive loss (METHOD.md section 2; this project's decision).
//
// A projection head maps the decoder's last features to 64-d unit vectors per pixel. Boundary
// pixels are the morphological gradient (3x3 max-pool dilate minus erode) of each class mask of
// the labels (ground truth on labeled slices, confident pseudo-labels on unlabeled ones; -1 marks
// pixels to ignore). Per class present, up to `max_anchors_per_class` anchors are drawn from its
// boundary pixels; the positive is the class's mean interior embedding (its prototype), the
// negatives are the other classes' prototypes and up to `max_band_negatives` pixels of other
// classes in the boundary band. Loss: InfoNCE with temperature 0.07, averaged over anchors.
// Classes absent from the batch are skipped; no anchor at all gives 0 (with a graph), not NaN.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "model/batch_norm.h"

namespace cmaf::losses {

inline constexpr int64_t kProjectionDim = 64;
inline constexpr double kContrastiveTemperature = 0.07;
inline constexpr int64_t kDefaultAnchorsPerClass = 128;
inline constexpr int64_t kDefaultBandNegatives = 256;

// Conv1x1(in -> in) - BN - ReLU - Conv1x1(in -> 64), L2-normalised over channels. The BN is the
// model's (model/batch_norm.h): with synchronised batch norm its statistics are taken over all
// ranks like the network's, so the head too does not depend on the per-rank split.
class ProjectionHeadImpl : public torch::nn::Module {
 public:
  explicit ProjectionHeadImpl(int64_t in_channels, int64_t out_channels = kProjectionDim);
  at::Tensor forward(const at::Tensor& features);

 private:
  torch::nn::Conv2d hidden_{nullptr}, out_{nullptr};
  model::BatchNorm2d norm_{nullptr};
};
TORCH_MODULE(ProjectionHead);

// labels [B, H, W] int64 (-1 = ignore) -> [B, H, W] bool: pixels on the morphological gradient
// of any class mask (both sides of every boundary). Ignored pixels are never boundary.
at::Tensor boundary_band(const at::Tensor& labels, int64_t classes);

struct ContrastiveOptions {
  double temperature = kContrastiveTemperature;
  int64_t max_anchors_per_class = kDefaultAnchorsPerClass;
  int64_t max_band_negatives = kDefaultBandNegatives;
  uint64_t seed = 0;  // anchor sampling; the caller varies it per step (and rank)
};

// embeddings [B, D, H, W] (unit vectors), labels [B, H, W] int64 with -1 = ignore.
at::Tensor boundary_contrastive_loss(const at::Tensor& embeddings, const at::Tensor& labels,
                                     int64_t classes, const ContrastiveOptions& options = {});

}  // namespace cmaf::losses
