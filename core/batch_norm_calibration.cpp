#include "core/batch_norm_calibration.h"

#include <torch/torch.h>

#include <algorithm>
#include <utility>

#include "common/error.h"
#include "common/random.h"
#include "datastore/case_file.h"
#include "datastore/slice_augment.h"

namespace cmaf::core {

void calibrate_on_slices(model::CmaformerImpl& model, model::RunningStatisticsCalibration& calibration,
                         const std::vector<CalibrationCase>& cases, int64_t input_size, int64_t batch,
                         uint64_t seed, const torch::Device& device, cluster::Communicator& world) {
  torch::NoGradGuard no_grad;
  const int64_t s = input_size;
  const int64_t cap = std::max<int64_t>(64, (int64_t{64} << 20) / (s * s * static_cast<int64_t>(sizeof(float))));
  std::vector<std::pair<size_t, int64_t>> slices;  // (case, slice)
  for (size_t c = 0; c < cases.size(); ++c) {
    for (int64_t z = 0; z < cases[c].slices; ++z) slices.emplace_back(c, z);
  }
  auto rng = DeterministicRng::derive(seed, static_cast<uint64_t>(world.rank()));
  for (size_t i = slices.size(); i > 1; --i) std::swap(slices[i - 1], slices[rng.below(i)]);
  if (static_cast<int64_t>(slices.size()) > cap) slices.resize(static_cast<size_t>(cap));
  // Work of this rank alone until the all-reduce below (a calibrating forward makes no collective).
  world.begin_local_work(str("batch-norm recalibration on this rank's ", slices.size(), " slices"));
  torch::Tensor x = torch::empty({static_cast<int64_t>(slices.size()), 1, s, s});
  for (size_t c = 0; c < cases.size(); ++c) {
    if (std::none_of(slices.begin(), slices.end(), [&](const auto& p) { return p.first == c; })) continue;
    const datastore::CaseFile file(cases[c].file);
    const auto& shape = file.metadata().geometry.shape;
    const std::vector<float> image = file.read_image();
    const datastore::SliceWarp resize(shape[1], shape[2], s, s, datastore::GeometricParams{});
    for (size_t i = 0; i < slices.size(); ++i) {
      if (slices[i].first != c) continue;
      datastore::warp_image(image.data() + slices[i].second * shape[1] * shape[2], resize,
                            x[static_cast<int64_t>(i)].data_ptr<float>());
    }
  }
  for (int64_t start = 0; start < x.size(0); start += batch) {
    model.forward(x.narrow(0, start, std::min(batch, x.size(0) - start)).to(device));
  }
  at::Tensor sums = calibration.sums();
  world.all_reduce(sums, cluster::ReduceOp::kSum);
  calibration.finish(sums);
}

}  // namespace cmaf::core
