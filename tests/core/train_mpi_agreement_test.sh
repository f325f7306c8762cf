#!/usr/bin/env bash
# Ranks started differently must stop before training, every rank with an error that says what
# differs (core/rank_agreement.h), instead of training apart until the replica check or failing
# at the first checkpoint:
#   train_mpi_agreement_test.sh MPIEXEC CMAFORMER
#     options   rank 1 with another --lr and --input-size: its error names both, with both values;
#               rank 0's names rank 1; no config.json written to the run folder
#     device    rank 1 with --device cuda, rank 0 cpu: named before the GPU set-up (whose
#               collectives the cpu rank would not make)
#     rank0     3 ranks, rank 0 the odd one: ranks 1 and 2 say they agree among themselves
#     rundir    rank 1 with another --run-dir (as a node-local folder would be): its error says
#               the folder is not the one rank 0 writes to; rank 0's names rank 1
#     dataset   rank 1 reading a copy of the dataset with one training case moved to validation
#     same      3 ranks, --threads, the spelling of --run-dir and --data, and the layout of the
#               manifest's JSON differing (allowed): the job trains and finishes, and the
#               check's file is gone from the run folder
set -euo pipefail
mpiexec="$1"
bin="$2"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "${work}"

"${bin}" synth --out ds --cases 10 --size 64 --slices 12 --classes 4 --labeled-cases 4 \
  --val-cases 2 --test-cases 0 --seed 3 > /dev/null 2>&1
cp -r ds ds-other
cp -r ds ds-relaid
python3 - <<'PY'
import json
m = json.load(open("ds-other/manifest.json"))
case = next(c for c in m["cases"] if c["split"] == "train" and not c["labeled"])
case["split"] = "val"  # another version of the dataset: one case less to train on
json.dump(m, open("ds-other/manifest.json", "w"), indent=2, sort_keys=True)
json.dump(json.load(open("ds-relaid/manifest.json")), open("ds-relaid/manifest.json", "w"), indent=7)  # same content
PY

common=(train --preset tiny --steps 2 --labeled-batch 2 --unlabeled-batch 2 --log-every 1
        --stall-seconds 30)
mpmd() {  # mpmd NAME -- RANK0 OPTIONS -- RANK1 OPTIONS: a 2-rank job, each rank its own options
  local name="$1"
  shift 2
  local first=() second=()
  while [[ $# -gt 0 && "$1" != -- ]]; do first+=("$1"); shift; done
  shift
  second=("$@")
  local start status=0
  start=$(date +%s)
  timeout 120 "${mpiexec}" --oversubscribe --bind-to none -np 1 "${bin}" "${common[@]}" "${first[@]}" \
    : -np 1 "${bin}" "${common[@]}" "${second[@]}" > "${name}.log" 2>&1 || status=$?
  elapsed=$(( $(date +%s) - start ))
  grep -E "^error|internal error" "${name}.log" || true
  echo "${name}: exit status ${status} after ${elapsed} s"
  [[ ${status} -ne 0 ]] || fail "${name}: the job exited 0"
  [[ ${status} -ne 124 ]] || fail "${name}: the job hung"
  if grep -q "internal error" "${name}.log"; then fail "${name}: an internal error instead of an input error"; fi
  if grep -qE "^step [0-9]+/" "${name}.log"; then fail "${name}: the ranks trained"; fi
}
expect() {  # expect NAME RANK TEXT: that rank's error line holds TEXT
  grep -E "^error: \[rank $2\] " "$1.log" | grep -qF -- "$3" || fail "$1: rank $2's error does not say: $3"
}

mpmd options -- --data ds --run-dir run-options --input-size 64 -- --data ds --run-dir run-options --input-size 96 \
  --lr 0.5
expect options 1 "--input-size 96 on this rank, 64 on rank 0; --lr 0.5 on this rank, 0.001 on rank 0"
expect options 0 "options: rank(s) 1 were started with other options than rank 0"
[[ ! -e run-options/config.json ]] || fail "options: rank 0 wrote config.json before the ranks agreed"

mpmd device -- --data ds --run-dir run-device --input-size 64 --device cpu \
  -- --data ds --run-dir run-device --input-size 64 --device cuda
expect device 1 '--device: --device "cuda" on this rank, "cpu" on rank 0'

# Rank 0 the odd one out of 3.
status=0
timeout 120 "${mpiexec}" --oversubscribe --bind-to none -np 1 "${bin}" "${common[@]}" --data ds --input-size 64 \
    --run-dir run-rank0 --lr 0.5 \
  : -np 2 "${bin}" "${common[@]}" --data ds --input-size 64 --run-dir run-rank0 > rank0.log 2>&1 || status=$?
grep -E "^error" rank0.log || true
[[ ${status} -ne 0 && ${status} -ne 124 ]] || fail "rank0: exit status ${status}"
for r in 1 2; do
  expect rank0 "${r}" "all 2 ranks other than rank 0 agree among themselves: rank 0 may be the one started differently"
done

mpmd rundir -- --data ds --run-dir run-a --input-size 64 -- --data ds --run-dir run-b --input-size 64
expect rundir 1 "run-b: --run-dir: not the folder rank 0 writes to"
expect rundir 1 "on a file system that every node sees"
expect rundir 0 "run-a: --run-dir: rank(s) 1 do not see this folder as rank 0 writes it"

mpmd dataset -- --data ds --run-dir run-data --input-size 64 -- --data ds-other --run-dir run-data --input-size 64
expect dataset 1 "--data (manifest.json): --data (manifest.json) fingerprint"
expect dataset 0 "rank(s) 1 were started with other options"

# Allowed differences: 3 ranks, other thread counts, the run folder named three ways.
status=0
timeout 180 "${mpiexec}" --oversubscribe --bind-to none -np 1 "${bin}" "${common[@]}" --data ds --input-size 64 \
    --run-dir run-same --threads 1 \
  : -np 1 "${bin}" "${common[@]}" --data "${work}/ds" --input-size 64 --run-dir "${work}/run-same" --threads 2 \
  : -np 1 "${bin}" "${common[@]}" --data ./ds-relaid --input-size 64 --run-dir ./run-same/ --threads 1 \
  > same.log 2>&1 || status=$?
[[ ${status} -eq 0 ]] || { tail -20 same.log; fail "same: the job with allowed differences exited ${status}"; }
grep -q "finished at step 2" same.log || fail "same: the job did not finish"
if compgen -G "run-same/.rank0-check-*" > /dev/null; then fail "same: the run folder check's file was left behind"; fi
echo "PASS"
