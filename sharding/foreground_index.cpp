#include "sharding/foreground_index.h"

#include <filesystem>

#include "datastore/case_file.h"

namespace cmaf::sharding {

ForegroundIndex build_foreground_index(const std::string& dataset_dir, const RankShard& shard) {
  ForegroundIndex index;
  for (const ShardCase& c : shard.labeled) {
    const datastore::CaseFile file((std::filesystem::path(dataset_dir) / c.file).string());
    const auto& shape = file.metadata().geometry.shape;
    const std::vector<uint8_t> label = file.read_label(datastore::LabelUse::kTraining);
    const auto slice_voxels = static_cast<size_t>(shape[1] * shape[2]);
    auto& classes = index[c.id];
    for (int64_t z = 0; z < shape[0]; ++z) {
      std::vector<bool> present(256, false);
      const uint8_t* slice = label.data() + static_cast<size_t>(z) * slice_voxels;
      for (size_t i = 0; i < slice_voxels; ++i) present[slice[i]] = true;
      for (int cls = 1; cls < 256; ++cls) {
        if (present[static_cast<size_t>(cls)]) classes[cls].push_back(z);
      }
    }
  }
  return index;
}

}  // namespace cmaf::sharding
