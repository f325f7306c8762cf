#include "core/batch_tensors.h"

#include <torch/torch.h>

namespace cmaf::core {

StepTensors to_tensors(const datastore::Batch& b) {
  const int64_t s = b.size;
  auto image = [s](const std::vector<float>& v, int64_t n) {
    return torch::from_blob(const_cast<float*>(v.data()), {n, 1, s, s}).clone();
  };
  StepTensors t;
  t.labeled = image(b.labeled_image, b.labeled_count());
  t.label = torch::from_blob(const_cast<uint8_t*>(b.labeled_label.data()), {b.labeled_count(), s, s}, torch::kUInt8)
                .to(torch::kLong);
  t.weak = image(b.weak_image, b.unlabeled_count());
  t.strong = image(b.strong_image, b.unlabeled_count());
  for (const auto& r : b.unlabeled_refs) t.unlabeled_slices.emplace_back(r.file, r.slice);
  t.geometry = b.unlabeled_geometry;
  return t;
}

StepTensors to_device(StepTensors t, const torch::Device& device, bool channels_last) {
  for (torch::Tensor* x : {&t.labeled, &t.label, &t.weak, &t.strong}) {
    if (x->defined()) *x = x->to(device);
  }
  if (channels_last) {
    for (torch::Tensor* x : {&t.labeled, &t.weak, &t.strong}) {
      if (x->defined()) *x = x->contiguous(torch::MemoryFormat::ChannelsLast);
    }
  }
  return t;
}

}  // namespace cmaf::core
