#include "datastore/batch_loader.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "common/error.h"
#include "datastore/case_file.h"
#include "datastore/manifest.h"

namespace cmaf::datastore {
namespace {

constexpr uint64_t kLabeledStream = 1;
constexpr uint64_t kUnlabeledStream = 2;
constexpr size_t kMaxOpenFilesPerThread = 64;

DeterministicRng sample_rng(uint64_t seed, int rank, uint64_t stream, int64_t step, size_t index) {
  DeterministicRng step_rng =
      DeterministicRng::derive(seed ^ (static_cast<uint64_t>(rank) << 40) ^ (stream << 56), static_cast<uint64_t>(step));
  return DeterministicRng::derive(step_rng.next_u64(), index);
}

}  // namespace

struct BatchLoader::CachedVolume {
  int64_t d = 0, h = 0, w = 0;
  std::vector<float> image;
  std::vector<uint8_t> label;  // empty unless loaded for the labeled stream
};

struct BatchLoader::ReaderState {
  std::map<std::string, std::unique_ptr<CaseFile>> files;  // this thread's own handles

  CaseFile& open(const std::string& path) {
    auto it = files.find(path);
    if (it != files.end()) return *it->second;
    if (files.size() >= kMaxOpenFilesPerThread) files.clear();
    return *files.emplace(path, std::make_unique<CaseFile>(path)).first->second;
  }
};

BatchLoader::BatchLoader(LoaderOptions options, StepSource source, int64_t first_step)
    : options_(std::move(options)), source_(std::move(source)), consumer_step_(first_step), next_claim_(first_step) {
  if (options_.input_size < 1) throw InputError("--input-size", "", str(options_.input_size, ", expected >= 1"));
  if (options_.threads < 1) throw InputError("--loader-threads", "", str(options_.threads, ", expected >= 1"));
  if (options_.queue_steps < 1) throw InputError("--loader-queue", "", str(options_.queue_steps, ", expected >= 1"));
  if (options_.cache_budget_bytes < 0) {
    throw InputError("--cache-budget-mib", "", str(options_.cache_budget_bytes, " bytes, expected >= 0"));
  }
  if (first_step < 0) throw InternalError(str("loader first step ", first_step, " < 0"));
  check_augment_options(options_.augment);
  CMAF_CHECK(static_cast<bool>(source_), "loader without a step source");

  const DatasetManifest manifest = load_manifest(options_.dataset_dir);
  for (const std::string& file : options_.shard_files) {
    const auto it = std::find_if(manifest.cases.begin(), manifest.cases.end(),
                                 [&](const ManifestCase& c) { return c.file == file; });
    if (it == manifest.cases.end()) {
      throw InputError(manifest_path(options_.dataset_dir), "cases", str("no case stored in '", file, "'"));
    }
    const int64_t per_slice = it->shape[1] * it->shape[2] * (4 + (it->labeled ? 1 : 0));
    slice_bytes_[file] = per_slice;
    stats_.shard_bytes += per_slice * it->slices();
  }
  stats_.cache_enabled = !options_.shard_files.empty() && stats_.shard_bytes <= options_.cache_budget_bytes;
  LOG(INFO) << "loader rank " << options_.rank << ": " << options_.shard_files.size() << " shard files, "
            << stats_.shard_bytes / (1 << 20) << " MiB, "
            << (stats_.cache_enabled ? "cached in memory" : "read per slice (over the cache budget)") << ", "
            << options_.threads << " reader threads, queue " << options_.queue_steps << " steps";
  threads_.reserve(static_cast<size_t>(options_.threads));
  for (int t = 0; t < options_.threads; ++t) threads_.emplace_back([this, t] { reader_loop(t); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void BatchLoader::reader_loop(int /*thread_index*/) {
  ReaderState reader;
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    space_.wait(lock, [&] { return stop_ || next_claim_ < consumer_step_ + options_.queue_steps; });
    if (stop_) return;
    const int64_t step = next_claim_++;
    lock.unlock();
    Slot slot;
    try {
      slot.batch = std::make_unique<Batch>(build(step, reader));
    } catch (...) {
      slot.error = std::current_exception();
    }
    lock.lock();
    slots_[step] = std::move(slot);
    stats_.max_buffered = std::max(stats_.max_buffered, static_cast<int64_t>(slots_.size()));
    ready_.notify_all();
  }
}

Batch BatchLoader::next() {
  const auto start = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  ready_.wait(lock, [&] { return slots_.count(consumer_step_) != 0; });
  auto node = slots_.extract(consumer_step_);
  ++consumer_step_;
  stats_.consumer_wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  lock.unlock();
  space_.notify_all();
  if (node.mapped().error) std::rethrow_exception(node.mapped().error);
  return std::move(*node.mapped().batch);
}

int64_t BatchLoader::next_step() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return consumer_step_;
}

LoaderStats BatchLoader::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

std::shared_ptr<const BatchLoader::CachedVolume> BatchLoader::cached(const std::string& file, bool with_label,
                                                                     ReaderState& reader) {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(file);
    if (it != cache_.end() && (!with_label || !it->second->label.empty())) return it->second;
  }
  // Read outside the lock with this thread's own handle; if two threads race, both volumes are
  // identical and the first stored wins.
  const CaseFile& case_file = reader.open((std::filesystem::path(options_.dataset_dir) / file).string());
  auto volume = std::make_shared<CachedVolume>();
  volume->d = case_file.metadata().geometry.shape[0];
  volume->h = case_file.metadata().geometry.shape[1];
  volume->w = case_file.metadata().geometry.shape[2];
  volume->image = case_file.read_image();
  if (with_label) volume->label = case_file.read_label(LabelUse::kTraining);
  std::lock_guard<std::mutex> lock(cache_mutex_);
  auto& entry = cache_[file];
  if (!entry || (with_label && entry->label.empty())) entry = std::move(volume);
  {
    std::lock_guard<std::mutex> stats_lock(mutex_);
    stats_.cached_cases = static_cast<int64_t>(cache_.size());
  }
  return entry;
}

void BatchLoader::read_slice(const SliceRequest& request, bool with_label, ReaderState& reader,
                             std::vector<float>* image, std::vector<uint8_t>* label, int64_t* h, int64_t* w) {
  if (stats_.cache_enabled && slice_bytes_.count(request.file) != 0) {
    const auto volume = cached(request.file, with_label, reader);
    if (request.slice < 0 || request.slice >= volume->d) {
      throw InputError(request.file, "image", str("slice ", request.slice, " out of range [0, ", volume->d, ")"));
    }
    *h = volume->h;
    *w = volume->w;
    const int64_t n = volume->h * volume->w;
    image->assign(volume->image.begin() + request.slice * n, volume->image.begin() + (request.slice + 1) * n);
    if (with_label) label->assign(volume->label.begin() + request.slice * n, volume->label.begin() + (request.slice + 1) * n);
    return;
  }
  const CaseFile& case_file = reader.open((std::filesystem::path(options_.dataset_dir) / request.file).string());
  *h = case_file.metadata().geometry.shape[1];
  *w = case_file.metadata().geometry.shape[2];
  image->resize(static_cast<size_t>(*h * *w));
  case_file.read_image_slice(request.slice, image->data());
  if (with_label) {
    label->resize(image->size());
    case_file.read_label_slice(request.slice, LabelUse::kTraining, label->data());
  }
}

Batch BatchLoader::build(int64_t step, ReaderState& reader) {
  const StepRequest request = source_(step);
  const int64_t s = options_.input_size;
  const int64_t n = s * s;
  Batch batch;
  batch.step = step;
  batch.size = s;
  batch.labeled_refs = request.labeled;
  batch.unlabeled_refs = request.unlabeled;
  batch.labeled_image.resize(request.labeled.size() * static_cast<size_t>(n));
  batch.labeled_label.resize(batch.labeled_image.size());
  batch.weak_image.resize(request.unlabeled.size() * static_cast<size_t>(n));
  batch.strong_image.resize(batch.weak_image.size());
  std::vector<float> image;
  std::vector<uint8_t> label;
  int64_t h = 0;
  int64_t w = 0;
  auto read = [&](const char* stream, size_t i, const SliceRequest& r, bool with_label) {
    try {
      read_slice(r, with_label, reader, &image, &label, &h, &w);
    } catch (const std::exception& e) {
      throw IoError(str("loader rank ", options_.rank, " step ", step, ", ", stream, " sample ", i, ": case file ",
                        (std::filesystem::path(options_.dataset_dir) / r.file).string(), " slice ", r.slice, ": ",
                        e.what()));
    }
  };
  for (size_t i = 0; i < request.labeled.size(); ++i) {
    read("labeled", i, request.labeled[i], true);
    DeterministicRng rng = sample_rng(options_.seed, options_.rank, kLabeledStream, step, i);
    const GeometricParams geometry = draw_geometry(options_.augment, rng);
    const IntensityParams intensity = draw_intensity(options_.augment, options_.augment.intensity_probability, rng);
    const SliceWarp warp(h, w, s, s, geometry);
    float* out_image = batch.labeled_image.data() + i * static_cast<size_t>(n);
    warp_image(image.data(), warp, out_image);
    warp_label(label.data(), warp, batch.labeled_label.data() + i * static_cast<size_t>(n));
    apply_intensity(out_image, n, intensity);
  }
  for (size_t i = 0; i < request.unlabeled.size(); ++i) {
    read("unlabeled", i, request.unlabeled[i], false);
    DeterministicRng rng = sample_rng(options_.seed, options_.rank, kUnlabeledStream, step, i);
    const GeometricParams geometry = draw_geometry(options_.augment, rng);
    const IntensityParams intensity =
        draw_intensity(options_.augment, options_.augment.strong_intensity_probability, rng);
    float* weak = batch.weak_image.data() + i * static_cast<size_t>(n);
    float* strong = batch.strong_image.data() + i * static_cast<size_t>(n);
    warp_image(image.data(), SliceWarp(h, w, s, s, geometry), weak);
    std::copy(weak, weak + n, strong);
    apply_intensity(strong, n, intensity);
    batch.unlabeled_geometry.push_back(geometry);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.slices_built += static_cast<int64_t>(request.labeled.size() + request.unlabeled.size());
  return batch;
}

}  // namespace cmaf::datastore
