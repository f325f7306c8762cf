// Random single-slice reads from a dataset's case files: the access pattern of the training
// input pipeline. Prints ms per slice (image + label) and checks every slice it read: image
// values finite and within [0, 1] after CT windowing, label ids below the class count.
//
//   slice_read_bench DATASET [READS] [SEED]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include "common/error.h"
#include "common/random.h"
#include "datastore/case_file.h"
#include "datastore/manifest.h"

int main(int argc, char** argv) {
  using namespace cmaf;
  using namespace cmaf::datastore;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATASET [READS] [SEED]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int reads = argc > 2 ? std::atoi(argv[2]) : 500;
  const uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 0;
  try {
    const DatasetManifest manifest = load_manifest(dir);
    std::vector<std::unique_ptr<CaseFile>> files;
    for (const ManifestCase& c : manifest.cases) {
      files.push_back(std::make_unique<CaseFile>((std::filesystem::path(dir) / c.file).string()));
    }
    DeterministicRng rng(seed);
    std::vector<float> image;
    std::vector<uint8_t> label;
    int64_t wrong = 0, label_reads = 0;
    double seconds = 0.0;
    for (int i = 0; i < reads; ++i) {
      const CaseFile& file = *files[rng.below(files.size())];
      const int64_t z = static_cast<int64_t>(rng.below(static_cast<uint64_t>(file.slices())));
      const auto voxels = static_cast<size_t>(file.metadata().geometry.slice_voxels());
      image.resize(voxels);
      label.resize(voxels);
      const auto start = std::chrono::steady_clock::now();
      file.read_image_slice(z, image.data());
      if (file.has_label()) file.read_label_slice(z, LabelUse::kEvaluation, label.data());
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      for (float v : image) wrong += !(std::isfinite(v) && v >= 0.0f && v <= 1.0f);
      if (file.has_label()) {
        ++label_reads;
        for (uint8_t v : label) wrong += v >= manifest.classes.size();
      }
    }
    std::printf("%d random slice reads (%lld with label) from %zu cases: %.3f ms per slice  #wrong %lld\n",
                reads, static_cast<long long>(label_reads), files.size(), 1e3 * seconds / reads,
                static_cast<long long>(wrong));
    return wrong == 0 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
