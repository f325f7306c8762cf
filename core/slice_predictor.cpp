#include "core/slice_predictor.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/error.h"
#include "datastore/slice_augment.h"

namespace cmaf::core {

std::vector<uint8_t> predict_volume(model::CmaformerImpl& model, const std::vector<float>& image,
                                    std::array<int64_t, 3> shape, int64_t batch, bool flip_tta) {
  const int64_t d = shape[0], h = shape[1], w = shape[2];
  CMAF_CHECK_EQ(static_cast<int64_t>(image.size()), d * h * w, "image voxels");
  const int64_t s = model.config().input_size;
  const bool was_training = model.is_training();
  model.eval();
  std::vector<uint8_t> out(image.size());
  const datastore::SliceWarp resize(h, w, s, s, datastore::GeometricParams{});
  const torch::Device device = model::module_device(model);
  torch::NoGradGuard no_grad;
  for (int64_t start = 0; start < d; start += batch) {
    const int64_t count = std::min(batch, d - start);
    torch::Tensor x = torch::empty({count, 1, s, s});
    for (int64_t i = 0; i < count; ++i) {
      datastore::warp_image(image.data() + (start + i) * h * w, resize, x[i].data_ptr<float>());
    }
    x = x.to(device);
    torch::Tensor p = model.probabilities(model.forward(x));
    if (flip_tta) p = 0.5 * (p + model.probabilities(model.forward(x.flip({3}))).flip({3}));
    if (h != s || w != s) {
      namespace F = torch::nn::functional;
      p = F::interpolate(p, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{h, w})
                                .mode(torch::kBilinear)
                                .align_corners(false));
    }
    const torch::Tensor labels = p.argmax(1).to(torch::kCPU, torch::kUInt8).contiguous();
    std::copy(labels.data_ptr<uint8_t>(), labels.data_ptr<uint8_t>() + count * h * w, out.begin() + start * h * w);
  }
  if (was_training) model.train();
  return out;
}

}  // namespace cmaf::core
