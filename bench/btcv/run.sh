#!/usr/bin/env bash
# BTCV semi-supervised benchmark: few labeled scans, does the method beat supervised training?
#
#   bench/btcv/run.sh [--runs a,c,b,...] [--flags "..."] [INPUT] [WORK]
#     INPUT  nnU-Net raw folder (default ../shared/data/btcv: 18 BTCV cases, 13 organs)
#     WORK   folder for the datasets, runs and tables (default /tmp/cmaf-btcv); re-running
#            continues where it stopped (finished runs are kept, a cut run resumes)
#     --runs which runs, in order (default a,c,b11; b and the ablations a1, b1-b13 are opt-in)
#     --flags train options added to every run after common.ini (for example another seed:
#            "--seed 1"); use a new WORK folder for new flags, finished runs are not redone
#
# Prepares two datasets with the same case split (Synapse 8 organs, 6 test cases drawn with
# seed 1, the other 12 for training): WORK/data-2 with 2 labeled train cases (~15 %) and 10
# unlabeled, WORK/data-all with all 12 labeled. Then trains, with common.ini (same preset,
# resolution, step budget and seed):
#   a   supervised on the 2 labeled cases      data-2    --unlabeled-batch 0 --ldc 0 --contrastive-weight 0
#   b   semi-supervised, the full method       data-2    (LDC multipliers + contrastive + pool)
#   c   supervised on all 12 (upper bound)     data-all  --unlabeled-batch 0 --ldc 0 --contrastive-weight 0
#   a1  a with the contrastive loss (labeled)  data-2    --unlabeled-batch 0 --ldc 0
#   b1  b without the contrastive loss         data-2    --contrastive-weight 0
#   b2  b with LDC at a fixed weight           data-2    --ldc-fixed-weight 1
#   b3  b with adaptive pool thresholds        data-2    --pool-thresholds adaptive
#   b4  b with EMA-teacher targets every step  data-2    --pool-refresh-every 0
#   b5  b's batches, no unlabeled loss         data-2    --ldc 0 --contrastive-weight 0
#       (the strong views only pass through the student and its batch norm)
#   b6  b with the strong views in their own   data-2    --separate-strong-forward 1
#       forward (own batch statistics; running statistics from the labeled slices only)
#   b7  b with the multipliers capped at 1     data-2    --multiplier-max 1
#       (default 10: a constraint the student cannot meet soon drives its multiplier there)
#   b8  b with the pool's organ gate           data-2    --pool-prior-ratio 3
#       (an organ enters a pool version only when its confident share is within 3x of its
#       share in the 2 labeled cases: no sparse first targets, no organ drifted to several times it)
#   b9  b8 with the strong views in their      data-2    --pool-prior-ratio 3 --separate-strong-forward 1
#       own forward (b6's batch norm on b8's gated pool)
#   b10 b with the teacher's batch-norm         data-2    --pool-recalibrate-bn 0
#       statistics as inherited from the student (the default before 2026-11-28)
#   b11 b with the first half of the steps     data-2    --unlabeled-start-step STEPS/2
#       on the labeled slices alone: the unlabeled stream, LDC, the contrastive term and the
#       pool start from a teacher trained like a (the ramp-up and pool refreshes count from there)
#   b12 b11 without the contrastive loss       data-2    --unlabeled-start-step STEPS/2 --contrastive-weight 0
#   b13 b11 with LDC at a fixed weight         data-2    --unlabeled-start-step STEPS/2 --ldc-fixed-weight 1
# Each run's last checkpoint is evaluated on the 6 test cases (whole volumes, Dice and HD95 in
# both conventions), once as trained (WORK/runs/NAME/eval) and once with its batch-norm
# statistics re-estimated on the training slices (eval --recalibrate-bn: WORK/runs/NAME/eval-rc;
# a, a1 and c on their labeled cases only, --recalibrate-on labeled), once post-processed to each
# organ's largest connected component (eval --largest-component: WORK/runs/NAME/eval-lc),
# and plotted; WORK/results.md holds the tables (bench/btcv/table.sh). Runs
# with a pool also get WORK/runs/NAME/pool_accuracy.md, the pool versions still on disk scored
# against the unlabeled cases' truth (bench/btcv/pool_accuracy.py; needs python3-h5py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${CMAF_BIN:-${here}/build/launch/cmaformer}"
runs="a,c,b11"
flags=()
while [[ "${1:-}" == --* ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --flags) read -r -a flags <<< "$2"; shift 2 ;;
    *) echo "error: unknown option $1 (expected --runs or --flags)" >&2; exit 2 ;;
  esac
done
input="${1:-${here}/../shared/data/btcv}"
work="${2:-/tmp/cmaf-btcv}"
threads="${CMAF_THREADS:-$(nproc)}"
mkdir -p "${work}"
log() { echo "# $(date -u +%H:%M:%S) $*"; }

prep() {  # prep OUT labeled-flag...
  local out="$1"; shift
  if [[ -f "${out}/manifest.json" ]]; then return; fi
  "${bin}" prep --input "${input}" --out "${out}" --label-map btcv13-to-synapse8 \
    --test-cases 6 --seed 1 "$@" 2> >(grep -v '^I' >&2)
}
test_ids() { jq -r '[.cases[] | select(.split == "test") | .id] | sort | join(",")' "$1/manifest.json"; }

log "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); ${threads} threads"
prep "${work}/data-2" --labeled-cases 2
prep "${work}/data-all" --labeled-fraction 1
if [[ "$(test_ids "${work}/data-2")" != "$(test_ids "${work}/data-all")" ]]; then
  echo "error: the two datasets have different test cases: $(test_ids "${work}/data-2") vs $(test_ids "${work}/data-all")" >&2
  exit 1
fi
log "test cases: $(test_ids "${work}/data-2")"

run() {  # run NAME DATA extra-flags...
  local name="$1" data="$2"; shift 2
  local dir="${work}/runs/${name}"
  mkdir -p "${dir}"
  if [[ ! -f "${dir}/eval/metrics.json" ]]; then
    log "run ${name}: cmaformer train --config common.ini --data ${data} ${flags[*]} $*"
    local start; start=$(date +%s)
    "${bin}" train --config "${here}/bench/btcv/common.ini" --data "${data}" --run-dir "${dir}" \
      --threads "${threads}" --resume auto "${flags[@]}" "$@" > "${dir}/train.out" 2>&1
    local checkpoint
    checkpoint="$(ls -d "${dir}"/checkpoints/step-* | sort | tail -1)"
    echo $(( $(date +%s) - start )) >> "${dir}/train_wall_s"
    log "run ${name}: eval ${checkpoint}"
    "${bin}" eval --checkpoint "${checkpoint}" --data "${data}" --split test --out "${dir}/eval" \
      --save-predictions --threads "${threads}" > "${dir}/eval.out" 2>&1
  fi
  if [[ ! -f "${dir}/eval-rc/metrics.json" ]]; then
    # The supervised baselines re-estimate on their labeled cases only: they never see the others.
    local last on=train
    case "${name}" in a|a1|c) on=labeled ;; esac
    last="$(ls -d "${dir}"/checkpoints/step-* | sort | tail -1)"
    "${bin}" eval --checkpoint "${last}" --data "${data}" --split test --out "${dir}/eval-rc" --recalibrate-bn \
      --recalibrate-on "${on}" --threads "${threads}" > "${dir}/eval-rc.out" 2>&1
  fi
  if [[ ! -f "${dir}/eval-lc/metrics.json" ]]; then
    # Post-processed: each organ's largest connected component only (nnU-Net's usual step).
    "${bin}" eval --checkpoint "$(ls -d "${dir}"/checkpoints/step-* | sort | tail -1)" --data "${data}" --split test \
      --out "${dir}/eval-lc" --largest-component --threads "${threads}" > "${dir}/eval-lc.out" 2>&1
  fi
  "${bin}" plot --run "${dir}" > "${dir}/plot.out" 2>&1 || log "run ${name}: plot failed, see ${dir}/plot.out"
  # How right the pool's pseudo-labels were (against the unlabeled cases' held-back truth).
  if [[ -d "${dir}/pool" ]] && /usr/bin/python3 -c "import h5py, numpy" 2> /dev/null; then
    /usr/bin/python3 "${here}/bench/btcv/pool_accuracy.py" "${dir}" "${data}" > "${dir}/pool_accuracy.md" \
      || log "run ${name}: pool_accuracy.py failed"
  fi
  log "run ${name}: mean Dice $(jq -r '.summary.mean.dice' "${dir}/eval/metrics.json"), recalibrated $(jq -r '.summary.mean.dice' "${dir}/eval-rc/metrics.json"), largest component $(jq -r '.summary.mean.dice' "${dir}/eval-lc/metrics.json")"
}

supervised=(--unlabeled-batch 0 --ldc 0 --contrastive-weight 0)
budget() {  # the step budget: the last --steps in --flags, else common.ini's
  local steps i
  steps="$(sed -n 's/^steps *= *//p' "${here}/bench/btcv/common.ini")"
  for ((i = 0; i + 1 < ${#flags[@]}; i++)); do [[ "${flags[i]}" == --steps ]] && steps="${flags[i + 1]}"; done
  echo "${steps}"
}
IFS=, read -r -a chosen <<< "${runs}"
for name in "${chosen[@]}"; do
  case "${name}" in
    a) run a "${work}/data-2" "${supervised[@]}" ;;
    c) run c "${work}/data-all" "${supervised[@]}" ;;
    a1) run a1 "${work}/data-2" --unlabeled-batch 0 --ldc 0 ;;
    b) run b "${work}/data-2" ;;
    b1) run b1 "${work}/data-2" --contrastive-weight 0 ;;
    b2) run b2 "${work}/data-2" --ldc-fixed-weight 1 ;;
    b3) run b3 "${work}/data-2" --pool-thresholds adaptive ;;
    b4) run b4 "${work}/data-2" --pool-refresh-every 0 ;;
    b5) run b5 "${work}/data-2" --ldc 0 --contrastive-weight 0 ;;
    b6) run b6 "${work}/data-2" --separate-strong-forward 1 ;;
    b7) run b7 "${work}/data-2" --multiplier-max 1 ;;
    b8) run b8 "${work}/data-2" --pool-prior-ratio 3 ;;
    b9) run b9 "${work}/data-2" --pool-prior-ratio 3 --separate-strong-forward 1 ;;
    b10) run b10 "${work}/data-2" --pool-recalibrate-bn 0 ;;
    b11) run b11 "${work}/data-2" --unlabeled-start-step $(( $(budget) / 2 )) ;;
    b12) run b12 "${work}/data-2" --unlabeled-start-step $(( $(budget) / 2 )) --contrastive-weight 0 ;;
    b13) run b13 "${work}/data-2" --unlabeled-start-step $(( $(budget) / 2 )) --ldc-fixed-weight 1 ;;
    *) echo "error: --runs: unknown run '${name}', expected a, b, c, a1, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13" >&2; exit 2 ;;
  esac
done
"${here}/bench/btcv/table.sh" "${work}" > "${work}/results.md"
log "tables: ${work}/results.md"
