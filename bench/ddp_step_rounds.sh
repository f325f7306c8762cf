#!/usr/bin/env bash
# The 2-rank data-parallel step against two unsynchronised processes side by side, in
# interleaved rounds: on a shared 2-core VM one leg's median moves by 5-10 % between identical
# runs, so a single pair of legs cannot settle a 3 % target. Each round runs the pair, then the
# 2-rank job (then, with CMAF_STEP_BENCH_B, the same 2-rank job with a second binary, for an
# A/B of two builds); it prints the per-round ratio to the pair's mean and, at the end, the
# median and range of the ratios. Each leg also shows its CPU seconds per step and, of those, what
# the communication thread and MPI's own threads used (step_bench's "cpu per step").
# A leg that fails or prints no step median is reported with its last error lines and its
# round left out; the run exits 1 when no round completed. The step's phases are compared too:
# "phases (2-rank - pair, ms)" per round and their medians at the end. Forward has no
# communication in either leg; after backward is the reducer's exposed wait (about 0 alone).
# The ratio is against the pair's mean (the issue's target) and, second, against the pair's slower
# process: a lockstep job runs at its slower rank's pace, and on a VM whose CPUs differ in speed
# (on one VM a lone process took 0.78-0.82 s a step on one CPU and 0.63-0.65 s on the other, and
# which CPU was the slower changed within minutes) the pair's mean is out of any synchronous
# job's reach, whatever its communication costs.
# Before the rounds, a lone process runs on each of the two cores (CMAF_STEP_CALIBRATE=0: not).
# CMAF_STEP_BIND=core pins both legs, one core per process (the pair through taskset on the
# first two cores this shell may use, the 2-rank job through mpirun --bind-to core): unpinned,
# the scheduler can leave the two processes of either leg unevenly placed for a whole run.
#   bench/ddp_step_rounds.sh [PRESET] [BATCH] [STEPS] [ROUNDS] [step_bench options...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
preset="${1:-half}"; batch="${2:-2}"; steps="${3:-10}"; rounds="${4:-5}"
shift $(( $# < 4 ? $# : 4 ))
bin="${CMAF_STEP_BENCH:-${here}/build/bench/step_bench}"
second="${CMAF_STEP_BENCH_B:-}"
args=(--preset "${preset}" --batch "${batch}" --threads 1 --steps "${steps}" --warmup 2 "$@")
# The lone processes and the pair train as `cmaformer train` does on one rank: batch norm over
# their own batch, whatever --sync-batch-norm asks of the 2-rank job.
alone_args=()
for a in "${args[@]}"; do [[ "${a}" == --sync-batch-norm ]] || alone_args+=("${a}"); done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The mean over ranks of their median steps; nothing when none was printed.
median_of() { { grep -o 'median step [0-9.]*' || true; } | awk '{ s += $3; n++ } END { if (n) printf "%.4f", s / n }'; }
slowest_of() { grep -o 'median step [0-9.]*' | awk '$3 > m { m = $3 } END { printf "%.4f", m }'; }  # the slower process
# phase_of NAME: the median of step_bench's phase NAME ("forward", "backward", "after backward",
# "optimizer"), mean over ranks; empty when the leg printed no phases (an older build).
phase_of() {
  { grep -oE "(phases|,) $1 [0-9.]+" || true; } | awk '{ s += $NF; n++ } END { if (n) printf "%.4f", s / n }'
}
phase_names=(forward backward "after backward" optimizer)
# "cpu P s (communication C ms)": medians of the process's and the computing thread's CPU seconds
# per step, means over ranks; C = P - compute thread: the communication thread and MPI's own.
# (The communication figure holds for --threads 1; a leg without the figures, an older build's
# or a failed one, shows "cpu n/a".)
cpu_of() {
  { grep -o 'cpu per step: process [0-9.]*, compute thread [0-9.]*' || true; } | tr -d ',' |
    awk '{ p += $5; c += $8; n++ } END {
      if (n) printf "cpu %.3f s (communication %.1f ms)", p / n, 1000 * (p - c) / n; else printf "cpu n/a" }'
}
bind="${CMAF_STEP_BIND:-none}"
if [[ "${bind}" != none && "${bind}" != core ]]; then
  echo "CMAF_STEP_BIND: none or core, not ${bind}" >&2; exit 2
fi
# One CPU on each of the first two cores this shell may use, as mpirun binds (a cpuset or an
# outer taskset can leave out CPU 0; hyperthreads of one core count once).
cpus=(); cores_seen=" "
IFS=, read -ra ranges <<< "$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)"
for range in "${ranges[@]}"; do
  for ((c = ${range%-*}; c <= ${range#*-}; c++)); do
    core="$(cat "/sys/devices/system/cpu/cpu${c}/topology/thread_siblings_list" 2>/dev/null || echo "${c}")"
    [[ "${cores_seen}" == *" ${core} "* ]] && continue
    cores_seen+="${core} "; cpus+=("${c}")
  done
done
pin=(); mpi_bind=(--bind-to none)
if [[ "${bind}" == core ]]; then
  if ((${#cpus[@]} < 2)); then
    echo "CMAF_STEP_BIND=core needs 2 cores, this shell may use ${#cpus[@]}" >&2; exit 2
  fi
  pin=(taskset -c); mpi_bind=(--map-by core --bind-to core)
fi
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) ${#cpus[@]} cores (of $(nproc) CPUs), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# ${args[*]}; ${rounds} rounds; binding ${CMAF_STEP_BIND:-none}"
err="$(mktemp)"
trap 'rm -f "${err}"' EXIT
# Each of the two cores alone first (CMAF_STEP_CALIBRATE=0 skips it): where they differ in speed,
# a 2-rank job runs at the slower one's pace, and the pair's mean is below what it can reach.
if [[ "${CMAF_STEP_CALIBRATE:-1}" != 0 ]] && ((${#cpus[@]} >= 2)); then
  lone=()
  for c in "${cpus[0]}" "${cpus[1]}"; do
    lone+=("$( { taskset -c "${c}" "${bin}" "${alone_args[@]}" 2> /dev/null || true; } | median_of)")
    echo "# lone process on CPU ${c}: median step ${lone[-1]:-n/a} s"
  done
  if awk -v a="${lone[0]:-0}" -v b="${lone[1]:-0}" 'BEGIN { exit !(a > 0 && b > 0) }'; then
    awk -v a="${lone[0]}" -v b="${lone[1]}" 'BEGIN {
      s = a > b ? a : b; f = a > b ? b : a; printf "# the slower CPU takes %+.1f %% longer a step\n", 100 * (s / f - 1) }'
  fi
fi
pair_leg() {  # the two unsynchronised processes; fails when either does
  local status=0 other
  "${pin[@]}" ${pin:+"${cpus[0]}"} "${bin}" "${alone_args[@]}" & other=$!
  "${pin[@]}" ${pin:+"${cpus[1]}"} "${bin}" "${alone_args[@]}" || status=$?
  wait "${other}" || status=$?
  return "${status}"
}
# run_leg ROUND NAME COMMAND...: the command's output; a leg that fails or prints no step median
# is reported with its last error lines (the round is then left out) instead of ending the run.
run_leg() {
  local round="$1" name="$2" status=0 out
  shift 2
  out="$("$@" 2> "${err}")" || status=$?
  if ((status != 0)) || ! grep -q 'median step [0-9]' <<< "${out}"; then
    { echo "round ${round}: the ${name} leg failed (exit ${status}, no step median); its last error lines:"
      grep -v -e '^-*$' -e '^ *$' "${err}" | tail -8 | sed 's/^/  /'; } >&2
    return 1
  fi
  printf '%s\n' "${out}"
}
ratios=(); ratios_slower=(); ratios_b=(); phase_deltas=()
for ((r = 1; r <= rounds; r++)); do
  pair_out="$(run_leg "${r}" pair pair_leg)" || continue
  ddp_out="$(run_leg "${r}" 2-rank mpirun -np 2 "${mpi_bind[@]}" "${bin}" "${args[@]}")" || continue
  pair="$(median_of <<< "${pair_out}")"; ddp="$(median_of <<< "${ddp_out}")"
  slower="$(slowest_of <<< "${pair_out}")"
  line="round ${r}: pair ${pair} s (slower ${slower} s), $(cpu_of <<< "${pair_out}"); 2-rank ${ddp} s"
  line+=" ($(awk -v a="${ddp}" -v b="${pair}" 'BEGIN { printf "%+.1f %%", 100 * (a / b - 1) }')"
  line+=", $(awk -v a="${ddp}" -v b="${slower}" 'BEGIN { printf "%+.1f %%", 100 * (a / b - 1) }') vs slower)"
  line+=", $(cpu_of <<< "${ddp_out}")"
  ratios+=("$(awk -v a="${ddp}" -v b="${pair}" 'BEGIN { print a / b }')")
  ratios_slower+=("$(awk -v a="${ddp}" -v b="${slower}" 'BEGIN { print a / b }')")
  deltas=""
  for ((k = 0; k < ${#phase_names[@]}; k++)); do
    a="$(phase_of "${phase_names[k]}" <<< "${pair_out}")"; b="$(phase_of "${phase_names[k]}" <<< "${ddp_out}")"
    [[ -n "${a}" && -n "${b}" ]] || continue
    d="$(awk -v a="${a}" -v b="${b}" 'BEGIN { printf "%+.1f", 1000 * (b - a) }')"
    deltas+="${deltas:+, }${phase_names[k]} ${d}"
    phase_deltas[k]+="${d} "
  done
  [[ -z "${deltas}" ]] || line+="; phases (2-rank - pair, ms): ${deltas}"
  if [[ -n "${second}" ]] && b_out="$(run_leg "${r}" "2-rank B" mpirun -np 2 "${mpi_bind[@]}" "${second}" "${args[@]}")"; then
    ddp_b="$(median_of <<< "${b_out}")"
    line+="; 2-rank B ${ddp_b} s ($(awk -v a="${ddp_b}" -v b="${pair}" 'BEGIN { printf "%+.1f %%", 100 * (a / b - 1) }'))"
    line+=", $(cpu_of <<< "${b_out}")"
    ratios_b+=("$(awk -v a="${ddp_b}" -v b="${pair}" 'BEGIN { print a / b }')")
  fi
  echo "${line}"
done
summary() {  # summary LABEL RATIO...
  local label="$1"; shift
  printf '%s\n' "$@" | sort -g | awk -v label="${label}" '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s: median %+.1f %%, range %+.1f .. %+.1f %% over %d rounds\n", label, 100 * (m - 1),
           100 * (v[1] - 1), 100 * (v[NR] - 1), NR }'
}
((${#ratios[@]} > 0)) || { echo "ddp_step_rounds: no round completed (see the errors above)" >&2; exit 1; }
summary "2-rank vs pair" "${ratios[@]}"
summary "2-rank vs the pair's slower process" "${ratios_slower[@]}"
for ((k = 0; k < ${#phase_names[@]}; k++)); do
  [[ -n "${phase_deltas[k]:-}" ]] || continue
  # shellcheck disable=SC2086  # a list of numbers
  printf '%s\n' ${phase_deltas[k]} | sort -g | awk -v name="${phase_names[k]}" '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%s, 2-rank - pair: median %+.1f ms, range %+.1f .. %+.1f ms\n", name, m, v[1], v[NR] }'
done
if [[ -n "${second}" ]]; then
  if ((${#ratios_b[@]} > 0)); then summary "2-rank B vs pair" "${ratios_b[@]}"; else echo "2-rank B: no round completed" >&2; fi
fi
((${#ratios[@]} == rounds)) || echo "ddp_step_rounds: ${#ratios[@]} of ${rounds} rounds completed" >&2
