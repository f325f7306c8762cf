// `cmaformer train`: data-parallel semi-supervised training of CMAformer (METHOD.md 2-3).
//
// Per step, on every rank: a labeled and an unlabeled batch from the rank's loader; the EMA
// teacher on the weak view gives targets (argmax) and confidences; the student runs once on the
// labeled slices and the strong view; loss = supervised + ramp(t) * (LDC Lagrangian term +
// w_con * boundary contrastive); backward with the bucketed reducer (gradients averaged over
// ranks); one small all-reduce carries the non-finite flags, the stop request and the loss
// terms; clipping, optimizer step, EMA update, dual step of the multipliers from the globally
// summed LDC statistics (bit-identical on every rank, fingerprint-checked every N steps).
//
// Collectives are issued in the same order on every rank. Rank 0 is the coordinator: it picks
// the checkpoint to resume from, publishes checkpoints, writes metrics.jsonl and the progress
// line.
//
// All state that must survive a restart is in TrainingState + the model, teacher, projection
// head and optimizer archives + each rank's RNG: resuming at the same world size continues
// bit-identically.
//
// With --pool-refresh-every R > 0 the targets come from the pseudo-label pool (refreshed by the
// EMA teacher at the start and every R steps) instead of a teacher forward at every step.
// --accumulate-steps A: each optimizer step sums the gradients of A micro-batches (1/A of the
// loss each) and communicates once, after the last one's backward.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "cluster/communicator.h"
#include "core/train_config.h"

namespace cmaf::core {

struct TrainResult {
  int64_t final_step = 0;          // steps completed
  int64_t resumed_from = -1;       // checkpoint step resumed from, -1 for a fresh run
  bool stopped_by_signal = false;  // then exit with kRequeueExitCode
  std::string last_checkpoint;
  double final_val_mean_dice = -1.0;
};

// Where the model trains. On a GPU the gradients, batch-norm statistics and LDC statistics are
// all-reduced by `communicator` (NCCL); the host-side values (loss sums, fingerprints,
// validation and pool counts) by the world communicator. nullptr: the world communicator.
struct TrainDevice {
  c10::Device device = c10::Device(c10::kCPU);
  cluster::Communicator* communicator = nullptr;
};

// Throws on bad configuration or data (InputError), I/O failures, non-finite training under
// the `stop` policy, and multiplier or replica mismatches between ranks.
TrainResult train(const TrainConfig& config, cluster::Communicator& world, const TrainDevice& device = {});

}  // namespace cmaf::core
