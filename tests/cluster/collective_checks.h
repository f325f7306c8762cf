// Checks of the cluster layer written against the Communicator interface, with expected values
// computed from rank and size: the same checks run with ranks as threads (local backend) and as
// real processes (mpirun, MPI backend).
#pragma once

#include <functional>

#include "cluster/communicator.h"
#include "cluster/gradient_reducer.h"

namespace cmaf::test {

void check_all_reduce(cluster::Communicator& c);
void check_broadcast_gather_barrier(cluster::Communicator& c);
// Async all-reduces complete in issue order; all_gather_async, barrier_async, broadcast_async
// and all_reduce_async in flight together each give their result; a wrong gather output is refused.
void check_async_order(cluster::Communicator& c);
// Reference and bucketed reducers give bit-identical averaged gradients, equal to the mean of
// the ranks' local gradients.
void check_reducers_agree(cluster::Communicator& c, const cluster::BucketOptions& options);
// Gradient accumulation: three micro-batches through the bucketed reducer (only the last one
// communicates) give the reference reducer's average of the summed gradients, bit for bit.
void check_accumulation_agrees(cluster::Communicator& c, const cluster::BucketOptions& options);
void check_parameter_sync(cluster::Communicator& c);
// The backend's all-reduce equals the local backend's rank-ordered reduction of the same seeded
// tensors (gathered here): bit-identical for 2 ranks, within fp32 rounding for more.
// Likewise for bf16: the same bits with 2 ranks, within the rounding of n - 1 partial sums for more.
void check_matches_local_backend(cluster::Communicator& c);
// The bucketed reducer with bf16 on the wire: the average is the sum of each rank's g / n rounded
// to bf16 (exactly that with 1 or 2 ranks, within bf16 rounding of the fp32 mean for more), and
// the same on every rank.
void check_bf16_wire_reducer(cluster::Communicator& c);

// Runs `body` on `ranks` threads, each with its communicator of one local group.
void run_as_threads(int ranks, const std::function<void(cluster::Communicator&)>& body);

}  // namespace cmaf::test
