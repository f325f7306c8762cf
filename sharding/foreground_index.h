// The per-class slice index that foreground oversampling draws from: for each labeled case of a
// shard, the slices that contain each foreground class. Built once per case by reading its
// label volume (the only file access in sharding/); the sizes agree with the manifest's
// class_slices.
#pragma once

#include <string>

#include "sharding/shard_plan.h"
#include "sharding/step_sampler.h"

namespace cmaf::sharding {

ForegroundIndex build_foreground_index(const std::string& dataset_dir, const RankShard& shard);

}  // namespace cmaf::sharding
