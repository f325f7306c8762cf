#!/usr/bin/env bash
# Training-step benchmark matrix for BENCHMARKS.md: C++ (fp32, bf16, each with and without
# channels-last) against the eager PyTorch twin on the same LibTorch build and threads.
#   bench/step_bench.sh [THREADS]      (python3-torch is needed for the PyTorch rows)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
threads="${1:-2}"
bin="${here}/build/bench/step_bench"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
run() {  # preset batch steps warmup
  local p="$1" b="$2" n="$3" w="$4"
  for precision in fp32 bf16; do
    "${bin}" --preset "$p" --batch "$b" --threads "$threads" --precision "$precision" --steps "$n" --warmup "$w"
    "${bin}" --preset "$p" --batch "$b" --threads "$threads" --precision "$precision" --steps "$n" --warmup "$w" --channels-last
    if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
      for layout in "" --channels-last; do
        /usr/bin/python3 "${here}/bench/step_bench_pytorch.py" --preset "$p" --batch "$b" --threads "$threads" \
          --steps "$n" --warmup "$w" $([[ "$precision" == bf16 ]] && echo --bf16) ${layout}
      done
    fi
  done
}
run quarter 8 5 2
run paper 2 3 1
