#!/usr/bin/env bash
# Data-parallel step cost on this machine: a 2-rank x 1-thread training step (bucketed reducer,
# overlap) against the same step in two unsynchronised 1-thread processes side by side (the
# ceiling on a shared 2-core machine) and in one lone 1-thread process; plus the same 2 ranks in
# lockstep without gradient communication (a barrier per step: the cost of waiting for each
# step's slower rank), the 2 ranks with bf16 gradients on the wire, and PyTorch DDP (gloo) on
# the eager twin when python3-torch is installed (with glibc's default allocator, and with ours).
#   bench/ddp_step_bench.sh [PRESET] [BATCH] [STEPS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
preset="${1:-quarter}"; batch="${2:-4}"; steps="${3:-8}"
bin="${here}/build/bench/step_bench"
args=(--preset "${preset}" --batch "${batch}" --threads 1 --steps "${steps}" --warmup 2)
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) cores"
echo "## lone process"
"${bin}" "${args[@]}"
echo "## two unsynchronised processes side by side"
"${bin}" "${args[@]}" & first=$!
"${bin}" "${args[@]}"
wait "${first}"
echo "## mpirun -np 2, bucketed reducer"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 --bind-to none "${bin}" "${args[@]}"
echo "## mpirun -np 2, bucketed reducer, bf16 on the wire"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 --bind-to none "${bin}" "${args[@]}" --bf16-wire
echo "## mpirun -np 2, lockstep only (barrier per step, no gradient all-reduce)"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 --bind-to none "${bin}" "${args[@]}" --sync-only
if /usr/bin/python3 -c "import torch" 2> /dev/null; then
  echo "## PyTorch eager: lone process, then DDP (gloo) 2 processes x 1 thread"
  py=(/usr/bin/python3 "${here}/bench/step_bench_pytorch.py" --preset "${preset}" --batch "${batch}" --threads 1
      --steps "${steps}" --warmup 2)
  "${py[@]}"
  "${py[@]}" --ddp 2
  # PyTorch keeps glibc's defaults, which map and unmap every buffer of 32 MiB and more (the
  # half preset's largest maps) each step; step_bench keeps them in the heap (common/heap_policy.h).
  # The same two rows with that policy set through glibc's environment:
  echo "## PyTorch eager and DDP (gloo) again, with step_bench's allocator policy (MALLOC_MMAP_MAX_=0, no trim)"
  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 "${py[@]}"
  MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 "${py[@]}" --ddp 2
else
  echo "## PyTorch rows skipped: apt-get install python3-torch"
fi
