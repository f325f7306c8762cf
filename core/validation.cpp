#include "core/validation.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "common/error.h"
#include "common/test_delay.h"
#include "datastore/case_file.h"
#include "datastore/slice_augment.h"

namespace cmaf::core {
namespace {

double dice_of(double intersection, double prediction, double target) {
  const double denominator = prediction + target;
  return denominator > 0.0 ? 2.0 * intersection / denominator : std::numeric_limits<double>::quiet_NaN();
}

double mean_defined(const std::vector<double>& values) {
  double sum = 0.0;
  int64_t count = 0;
  for (double v : values) {
    if (std::isnan(v)) continue;
    sum += v;
    ++count;
  }
  return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

Validator::Validator(std::string dataset_dir, const datastore::DatasetManifest& manifest, int64_t input_size,
                     int64_t max_slices, int rank, int world_size)
    : dataset_dir_(std::move(dataset_dir)),
      input_size_(input_size),
      classes_(static_cast<int64_t>(manifest.classes.size())) {
  for (const auto& s : manifest.sites) sites_.push_back(s.name);
  std::vector<Item> all;
  for (const auto& c : manifest.cases) {
    if (c.split != datastore::Split::kVal || !c.has_label) continue;
    const int site = static_cast<int>(
        std::find(sites_.begin(), sites_.end(), c.site) - sites_.begin());
    if (site == static_cast<int>(sites_.size())) sites_.push_back(c.site);
    for (int64_t z = 0; z < c.slices(); ++z) all.push_back({c.file, z, site});
  }
  if (max_slices > 0 && static_cast<int64_t>(all.size()) > max_slices) {
    std::vector<Item> spaced;
    for (int64_t i = 0; i < max_slices; ++i) {
      spaced.push_back(all[static_cast<size_t>(i * static_cast<int64_t>(all.size()) / max_slices)]);
    }
    all = std::move(spaced);
  }
  total_ = static_cast<int64_t>(all.size());
  for (size_t i = static_cast<size_t>(rank); i < all.size(); i += static_cast<size_t>(world_size)) {
    mine_.push_back(all[i]);
  }
}

void Validator::load() {
  const int64_t s = input_size_;
  const auto n = static_cast<int64_t>(mine_.size());
  images_ = torch::zeros({n, 1, s, s});
  at::Tensor labels = torch::zeros({n, s, s}, torch::kUInt8);
  std::map<std::string, std::unique_ptr<datastore::CaseFile>> files;
  for (int64_t i = 0; i < n; ++i) {
    const Item& item = mine_[static_cast<size_t>(i)];
    auto& file = files[item.file];
    if (!file) file = std::make_unique<datastore::CaseFile>((std::filesystem::path(dataset_dir_) / item.file).string());
    const auto& shape = file->metadata().geometry.shape;
    std::vector<float> image(static_cast<size_t>(shape[1] * shape[2]));
    std::vector<uint8_t> label(image.size());
    file->read_image_slice(item.slice, image.data());
    file->read_label_slice(item.slice, datastore::LabelUse::kEvaluation, label.data());
    const datastore::SliceWarp resize(shape[1], shape[2], s, s, datastore::GeometricParams{});
    datastore::warp_image(image.data(), resize, images_[i].data_ptr<float>());
    datastore::warp_label(label.data(), resize, labels[i].data_ptr<uint8_t>());
  }
  labels_ = labels.to(torch::kLong);
  loaded_ = true;
}

ValidationResult Validator::run(model::CmaformerImpl& model, cluster::Communicator& world, int64_t batch) {
  // Work of this rank alone until the all-reduce below (eval-mode batch norm makes no collective):
  // a rank on a slower node, or the one with a slice more, keeps the others waiting there.
  world.begin_local_work(str("validation on this rank's ", mine_.size(), " slices"));
  if (!loaded_) load();
  const int64_t k = classes_ - 1;
  const auto site_count = static_cast<int64_t>(sites_.size());
  // [sites, K-1, 3]: intersection, prediction, target voxel counts; plus the slice count.
  at::Tensor stats = torch::zeros({site_count * k * 3 + 1}, torch::kDouble);
  const bool was_training = model.is_training();
  model.eval();
  {
    torch::NoGradGuard no_grad;
    const auto n = images_.size(0);
    const torch::Device device = model::module_device(model);
    for (int64_t start = 0; start < n; start += batch) {
      const int64_t count = std::min(batch, n - start);
      test_delay("CMAF_VALIDATION_SLICE_DELAY_MS", count);
      const at::Tensor prediction = model.forward(images_.narrow(0, start, count).to(device)).argmax(1).cpu();
      const at::Tensor truth = labels_.narrow(0, start, count);
      for (int64_t j = 0; j < count; ++j) {
        const int site = mine_[static_cast<size_t>(start + j)].site;
        for (int64_t c = 1; c < classes_; ++c) {
          const at::Tensor p = prediction[j].eq(c);
          const at::Tensor t = truth[j].eq(c);
          const int64_t base = (site * k + (c - 1)) * 3;
          stats[base] += p.logical_and(t).sum().item<double>();
          stats[base + 1] += p.sum().item<double>();
          stats[base + 2] += t.sum().item<double>();
        }
      }
    }
    stats[site_count * k * 3] = static_cast<double>(n);
  }
  if (was_training) model.train();
  world.all_reduce(stats, cluster::ReduceOp::kSum);
  const auto* v = stats.data_ptr<double>();
  ValidationResult result;
  result.slices = static_cast<int64_t>(v[site_count * k * 3]);
  for (int64_t c = 0; c < k; ++c) {
    double i = 0, p = 0, t = 0;
    for (int64_t s = 0; s < site_count; ++s) {
      const int64_t base = (s * k + c) * 3;
      i += v[base];
      p += v[base + 1];
      t += v[base + 2];
    }
    result.dice.push_back(dice_of(i, p, t));
  }
  result.mean_dice = mean_defined(result.dice);
  for (int64_t s = 0; s < site_count; ++s) {
    std::vector<double> dice;
    bool any = false;
    for (int64_t c = 0; c < k; ++c) {
      const int64_t base = (s * k + c) * 3;
      dice.push_back(dice_of(v[base], v[base + 1], v[base + 2]));
      any |= v[base + 2] > 0;
    }
    if (!any) continue;
    result.site_mean_dice[sites_[static_cast<size_t>(s)]] = mean_defined(dice);
    result.site_dice[sites_[static_cast<size_t>(s)]] = std::move(dice);
  }
  return result;
}

}  // namespace cmaf::core
