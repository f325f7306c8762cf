#include "losses/boundary_contrastive.h"

#include <vector>

#include "common/error.h"
#include "common/random.h"
#include "losses/loss_precision.h"

namespace cmaf::losses {
namespace {

// Up to `count` of the indices, drawn without replacement by the portable RNG.
at::Tensor sample(const at::Tensor& indices, int64_t count, DeterministicRng& rng) {
  const int64_t n = indices.numel();
  if (n <= count) return indices;
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  rng.shuffle(order);
  order.resize(static_cast<size_t>(count));
  return indices.index_select(0, at::tensor(order, at::kLong).to(indices.device()));
}

}  // namespace

ProjectionHeadImpl::ProjectionHeadImpl(int64_t in_channels, int64_t out_channels) {
  hidden_ = register_module("hidden", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, in_channels, 1)));
  norm_ = register_module("norm", model::BatchNorm2d(in_channels, 1e-5, 0.1));  // torch::nn's defaults
  out_ = register_module("out", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, out_channels, 1)));
}

at::Tensor ProjectionHeadImpl::forward(const at::Tensor& features) {
  const at::Tensor z = widened(out_(at::relu(norm_(hidden_(features)))));
  return z / z.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12);
}

at::Tensor boundary_band(const at::Tensor& labels, int64_t classes) {
  CMAF_CHECK_EQ(labels.dim(), 3, "labels must be [B, H, W]");
  const at::Tensor valid = labels.ge(0);
  at::Tensor band = at::zeros_like(valid);
  for (int64_t c = 0; c < classes; ++c) {
    const at::Tensor mask = labels.eq(c).to(at::kFloat).unsqueeze(1);
    if (mask.sum().item<double>() == 0.0) continue;
    const at::Tensor dilated = at::max_pool2d(mask, {3, 3}, {1, 1}, {1, 1});
    const at::Tensor eroded = 1.0 - at::max_pool2d(1.0 - mask, {3, 3}, {1, 1}, {1, 1});
    band = band.logical_or((dilated - eroded).squeeze(1).gt(0.5));
  }
  return band.logical_and(valid);
}

at::Tensor boundary_contrastive_loss(const at::Tensor& embeddings, const at::Tensor& labels,
                                     int64_t classes, const ContrastiveOptions& options) {
  CMAF_CHECK_EQ(embeddings.dim(), 4, "embeddings must be [B, D, H, W]");
  CMAF_CHECK(labels.dim() == 3 && labels.size(0) == embeddings.size(0) &&
                 labels.size(1) == embeddings.size(2) && labels.size(2) == embeddings.size(3),
             "labels ", labels.sizes(), " vs embeddings ", embeddings.sizes());
  // Every embedding the loss uses is picked out of e by one matrix product (prototypes) and one
  // index_select (anchors and band negatives), so backward scatters into a [P, D] gradient twice
  // per call rather than three times per class (each a fresh 30+ MB buffer at 8 x 128 x 128).
  const at::Tensor e = widened(embeddings).permute({0, 2, 3, 1}).reshape({-1, embeddings.size(1)});  // [P, D]
  const at::Tensor y = labels.reshape({-1});
  const at::Tensor band = boundary_band(labels, classes).reshape({-1});
  const at::Tensor not_band = band.logical_not();

  // Prototypes of the classes present: mean interior embedding (all pixels if no interior).
  std::vector<int64_t> present;
  std::vector<at::Tensor> weights;  // per present class: [P] averaging weights
  for (int64_t c = 0; c < classes; ++c) {
    const at::Tensor members = y.eq(c);
    const int64_t count = members.sum().item<int64_t>();
    if (count == 0) continue;
    const at::Tensor interior = members.logical_and(not_band);
    const int64_t interior_count = interior.sum().item<int64_t>();
    const at::Tensor chosen = interior_count > 0 ? interior : members;
    weights.push_back(chosen.to(e.scalar_type()) / static_cast<double>(interior_count > 0 ? interior_count : count));
    present.push_back(c);
  }
  const at::Tensor zero = e.sum() * 0.0;  // keeps the graph when there is nothing to contrast
  if (present.size() < 2) return zero;
  const at::Tensor means = at::matmul(at::stack(weights), e);  // [C_present, D]
  const at::Tensor prototype_matrix = means / means.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12);

  // Sample anchors and band negatives per class (the same draws, in the same order, as one
  // selection per class), then gather them all at once.
  DeterministicRng rng(options.seed);
  std::vector<size_t> classes_used;
  std::vector<int64_t> anchor_counts, negative_counts;
  std::vector<at::Tensor> picks;
  for (size_t k = 0; k < present.size(); ++k) {
    const int64_t c = present[k];
    const at::Tensor boundary = y.eq(c).logical_and(band).nonzero().reshape({-1});
    if (boundary.numel() == 0) continue;
    const at::Tensor anchors = sample(boundary, options.max_anchors_per_class, rng);
    const at::Tensor others = band.logical_and(y.ne(c)).logical_and(y.ge(0)).nonzero().reshape({-1});
    const at::Tensor negatives = sample(others, options.max_band_negatives, rng);
    classes_used.push_back(k);
    anchor_counts.push_back(anchors.numel());
    negative_counts.push_back(negatives.numel());
    picks.push_back(anchors);
    picks.push_back(negatives);
  }
  if (classes_used.empty()) return zero;
  const at::Tensor picked = e.index_select(0, at::cat(picks));

  at::Tensor total = zero;
  int64_t anchors_used = 0;
  int64_t offset = 0;
  for (size_t i = 0; i < classes_used.size(); ++i) {
    const auto k = static_cast<int64_t>(classes_used[i]);
    const at::Tensor anchors = picked.slice(0, offset, offset + anchor_counts[i]);
    offset += anchor_counts[i];
    const at::Tensor band_negatives = picked.slice(0, offset, offset + negative_counts[i]);
    offset += negative_counts[i];
    // Candidates: own prototype first (the positive), other prototypes, band pixels of others.
    std::vector<at::Tensor> candidates{prototype_matrix.slice(0, k, k + 1)};
    if (k > 0) candidates.push_back(prototype_matrix.slice(0, 0, k));
    if (k + 1 < static_cast<int64_t>(present.size())) candidates.push_back(prototype_matrix.slice(0, k + 1));
    candidates.push_back(band_negatives);
    const at::Tensor logits = at::matmul(anchors, at::cat(candidates).t()) / options.temperature;
    const at::Tensor target = at::zeros({anchors.size(0)}, logits.options().dtype(at::kLong));
    total = total + at::cross_entropy_loss(logits, target, {}, at::Reduction::Sum);
    anchors_used += anchors.size(0);
  }
  return total / static_cast<double>(anchors_used);
}

}  // namespace cmaf::losses
