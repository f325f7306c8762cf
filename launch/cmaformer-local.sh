#!/usr/bin/env bash
# Local launcher: run a cmaformer subcommand as N ranks on this machine with the right mpirun
# flags and thread count.
#
#   launch/cmaformer-local.sh N SUBCOMMAND [options...]
#   launch/cmaformer-local.sh 2 train --data data/phantom --run-dir runs/phantom --preset tiny
#
# Threads per rank T = CPUs / N (at least 1), passed as --threads unless the options set it.
# When the ranks fit (N <= CPUs) and this shell may use every CPU of the machine, each rank is
# bound to its own T CPUs (hardware threads): --use-hwthread-cpus --map-by slot:PE=T
# --bind-to hwthread. On a 2-core VM, a step of 2 ranks of `cmaformer train` took 12 % less
# time bound than unbound (median of 7 alternated runs: 4-18 % less in 6, 2 % more in 1), and
# the ranks waited less for each other (BENCHMARKS.md, 2026-12-06).
# Otherwise the ranks are launched unbound (--bind-to none) and share the shell's CPUs: mpirun
# maps onto the whole machine, not onto an outer taskset's or container's CPU list. So does
# CMAF_LOCAL_BIND=none. N > CPUs adds --oversubscribe. --allow-run-as-root only as root.
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
bind="${CMAF_LOCAL_BIND:-core}"
if [[ "${bind}" != core && "${bind}" != none ]]; then
  echo "$0: CMAF_LOCAL_BIND is '${bind}'; expected core (each rank on its own CPUs, the default) or none" >&2
  exit 2
fi
flags=(-np "${ranks}")
if ((ranks > cores)); then
  flags+=(--oversubscribe --bind-to none)
elif [[ "${bind}" == none || "${cores}" != "$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc --all)" ]]; then
  flags+=(--bind-to none)
else
  # PE counts hardware threads, as nproc does: T of them per rank, consecutive in hwloc's order
  # (both threads of a core before the next core).
  flags+=(--use-hwthread-cpus --map-by "slot:PE=${threads}" --bind-to hwthread)
fi
[[ "$(id -u)" != 0 ]] || flags+=(--allow-run-as-root)
args=("$@")
has_threads=0
for a in "${args[@]}"; do [[ "${a}" == --threads || "${a}" == --threads=* ]] && has_threads=1; done
subcommand="${args[0]}"
case "${subcommand}" in
  train | eval | bench) ((has_threads)) || args+=(--threads "${threads}") ;;
esac
export OMP_NUM_THREADS="${threads}"
echo "cmaformer-local: ${ranks} rank(s) x ${threads} thread(s) on ${cores} cores: mpirun ${flags[*]}" >&2
exec mpirun "${flags[@]}" "${bin}" "${args[@]}"
