#!/usr/bin/env bash
# Local launcher: run a cmaformer subcommand as N ranks on this machine with the right mpirun
# flags and thread count.
#
#   launch/cmaformer-local.sh N SUBCOMMAND [options...]
#   launch/cmaformer-local.sh 2 train --data data/phantom --run-dir runs/phantom --preset tiny
#
# Threads per rank = cores / N (at least 1), passed as --threads unless the options set it;
# --bind-to none (ranks use several threads); --oversubscribe when N exceeds the cores;
# --allow-run-as-root only when running as root. CMAF_BIN overrides the executable
# (default: build/launch/cmaformer next to this script's repository, else cmaformer on PATH).
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
flags=(-np "${ranks}" --bind-to none)
((ranks <= cores)) || flags+=(--oversubscribe)
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
