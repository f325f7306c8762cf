#!/usr/bin/env bash
# Prep throughput on real CT: nnU-Net raw folder -> Synapse 8-organ dataset, then checks.
#
#   bench/prep_btcv.sh [INPUT] [OUT]
#     INPUT  nnU-Net raw folder (default ../shared/data/btcv, 18 BTCV cases)
#     OUT    dataset folder to create (default a fresh temp folder, removed afterwards)
#
# Prints prep's own throughput line (MB/s of compressed input, slices/s), then verifies the
# result: every voxel (--verify-data) and every label recounted from its source scan
# (--verify-sources); then times random slice reads. Exit status non-zero if any check fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CMAF_BIN:-${here}/build/launch/cmaformer}"
input="${1:-${here}/../shared/data/btcv}"
out="${2:-}"
cleanup=""
if [[ -z "${out}" ]]; then
  out="$(mktemp -d)/synapse8"
  cleanup="$(dirname "${out}")"
fi
trap '[[ -n "${cleanup}" ]] && rm -rf "${cleanup}"' EXIT

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# input ${input}: $(du -sh "${input}" | cut -f1) in $(find "${input}" -name '*.nii.gz' | wc -l) files"
/usr/bin/time -f "# prep wall %e s, max RSS %M KB" \
  "${bin}" prep --input "${input}" --out "${out}" --label-map btcv13-to-synapse8 \
  --test-cases 6 --labeled-cases 2 --seed 1 2> >(grep -v '^I' >&2)
"${bin}" inspect "${out}" --verify-data --verify-sources
"${here}/build/bench/slice_read_bench" "${out}" 1000 0
