// Before training, the checks that every rank runs the same job: the same options, the same
// dataset, and one run folder that they all see.
//
// A rank started with other options (an INI file that differs between nodes, a command line
// edited for one task) would otherwise train a different model or step until the replica check
// (--fingerprint-every) stops the job, with no word of why. A run folder that some ranks do not
// see as rank 0 writes it (node-local storage: /tmp, $TMPDIR, a local SSD; or another --run-dir)
// would otherwise fail at the first checkpoint, hours in, when those ranks write their parts
// into a staging folder that is not there for them. Both checks are collective; on a mismatch
// every rank throws InputError, the ranks that differ naming what differs, the others naming
// those ranks.
#pragma once

#include <string>

#include "cluster/communicator.h"
#include "core/train_config.h"

namespace cmaf::core {

// The options every rank must share, as JSON: the training options less those that may differ
// per rank without changing what is trained (the data and run folder paths, which the checks
// below cover by content, and the thread, loader, cache and stall settings), plus a fingerprint
// of the dataset's manifest.json as "dataset manifest". --site-weights is compared by value (sites
// in any order, weights of 1 left out). Expects a validated config (TrainConfig::validate).
std::string shared_options_text(const TrainConfig& config);

// Collective: every rank's shared_options_text() against rank 0's. `cmaformer train` calls it
// once the world communicator exists, before the device's set-up (with another --device a rank
// would not make the GPU set-up's collectives) and before the Trainer.
void check_options_agree(const TrainConfig& config, cluster::Communicator& world);

// Collective, after rank 0 has created `run_dir`: rank 0 writes a file named by a fresh random
// token there, and every other rank must read it from its own `run_dir` within a few seconds
// (marked as work of its own meanwhile, not a stall). Called by the Trainer.
void check_run_dir_shared(const std::string& run_dir, cluster::Communicator& world);

}  // namespace cmaf::core
