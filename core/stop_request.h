// Preemption requests: SIGUSR1 (Slurm's --signal) and SIGTERM set a flag; the trainer shares it
// with every rank through the next per-step all-reduce, so all ranks stop at the same step,
// checkpoint, and exit with kRequeueExitCode. Further signals during the save only set the flag
// again (the save itself is protected by the checkpoint protocol). SIGTERM also reaches the stall
// watchdogs (cluster::note_ending_signal): while a rank is silent (dead, or its node hung), a
// collective then ends the job with the stall's report at once, not at the stall limit.
#pragma once

namespace cmaf::core {

// Installs the handlers (idempotent). Not restored: the process is a trainer from then on.
void install_stop_handlers();
bool stop_requested();
int stop_signal();  // the first signal received, 0 if none
void clear_stop_request();  // for tests

}  // namespace cmaf::core
