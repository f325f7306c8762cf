#!/usr/bin/env bash
# Local launcher: run a cmaformer subcommand as N ranks on this machine with the right mpirun
# flags and thread count.
#
#   launch/cmaformer-local.sh N SUBCOMMAND [options...]
#   launch/cmaformer-local.sh 2 train --data data/phantom --run-dir runs/phantom --preset tiny
#
# Threads per rank T = CPUs / N (at least 1), passed as --threads unless the options set it.
# Each rank is bound to its own T CPUs (hardware threads, as nproc counts them:
# --use-hwthread-cpus --map-by slot:PE=T --bind-to hwthread) when N divides the CPUs and this
# shell may use every online CPU. On a 2-core VM, a step of 2 ranks of `cmaformer train` took
# 12 % less time bound than unbound (median of 7 alternated runs: 4-18 % less in 6, 2 % more in
# 1), and the ranks waited less for each other (BENCHMARKS.md, 2026-12-06).
# Otherwise the ranks run unbound (--bind-to none) on the shell's CPUs, and the launcher says why:
# under an outer taskset (mpirun would map them onto CPUs outside it), when N does not divide the
# CPUs (a bound rank's loader threads could not use the spare ones), with more ranks than CPUs
# (also --oversubscribe), when the options ask for another --threads, and with
# CMAF_LOCAL_BIND=none. --allow-run-as-root only as root.
# CMAF_BIN overrides the executable (default: build/launch/cmaformer next to this script's
# repository, else cmaformer on PATH).
set -euo pipefail
if [[ $# -lt 2 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N SUBCOMMAND [options...]   (N ranks on this machine)" >&2
  exit 2
fi
ranks="$1"
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CMAF_BIN:-${here}/build/launch/cmaformer}"
[[ -x "${bin}" ]] || bin="$(command -v cmaformer || true)"
[[ -n "${bin}" ]] || { echo "$0: no cmaformer executable (build it, or set CMAF_BIN)" >&2; exit 2; }
# The CPUs this shell may use (nproc alone would obey an exported OMP_NUM_THREADS).
cores="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
threads=$((cores / ranks))
((threads >= 1)) || threads=1
args=("$@")
has_threads=0
asked=""  # the value of --threads in the options, if any
for ((i = 0; i < ${#args[@]}; ++i)); do
  case "${args[i]}" in
    --threads) has_threads=1; asked="${args[i + 1]:-}" ;;
    --threads=*) has_threads=1; asked="${args[i]#--threads=}" ;;
  esac
done
bind="${CMAF_LOCAL_BIND:-cpus}"
if [[ "${bind}" != cpus && "${bind}" != none ]]; then
  echo "$0: CMAF_LOCAL_BIND is '${bind}'; expected cpus (each rank on its own CPUs, the default) or none" >&2
  exit 2
fi
online="$(getconf _NPROCESSORS_ONLN)"
flags=(-np "${ranks}")
unbound=""
if ((ranks > cores)); then
  flags+=(--oversubscribe)
  unbound="more ranks than CPUs"
elif [[ "${bind}" == none ]]; then
  unbound="CMAF_LOCAL_BIND=none"
elif ((cores != online)); then
  unbound="this shell may use ${cores} of the ${online} online CPUs, and mpirun would bind onto any of them"
elif ((cores % ranks != 0)); then
  unbound="${ranks} ranks do not divide ${cores} CPUs"
elif ((has_threads)) && [[ "${asked}" != "${threads}" ]]; then
  unbound="--threads ${asked} is not CPUs / ranks = ${threads}"
fi
if [[ -n "${unbound}" ]]; then
  flags+=(--bind-to none)
else
  # PE counts hardware threads, as nproc does: T of them per rank, consecutive in hwloc's order
  # (both threads of a core before the next core).
  flags+=(--use-hwthread-cpus --map-by "slot:PE=${threads}" --bind-to hwthread)
fi
[[ "$(id -u)" != 0 ]] || flags+=(--allow-run-as-root)
subcommand="${args[0]}"
case "${subcommand}" in
  train | eval | bench) ((has_threads)) || args+=(--threads "${threads}") ;;
esac
export OMP_NUM_THREADS="${threads}"
echo "cmaformer-local: ${ranks} rank(s) x ${threads} thread(s) on ${cores} CPUs${unbound:+, unbound (${unbound})}:" \
  "mpirun ${flags[*]}" >&2
exec mpirun "${flags[@]}" "${bin}" "${args[@]}"
