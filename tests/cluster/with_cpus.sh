#!/usr/bin/env bash
# with_cpus.sh N [--export NAME] COMMAND [ARGS...]: runs COMMAND when this process may run on at
# least N CPUs, else exits 77 (ctest's skip code for such tests). --export NAME: with NAME set to
# that count of CPUs in COMMAND's environment.
set -euo pipefail
needed="$1"
shift
name=""
if [[ "${1:-}" == --export ]]; then name="$2"; shift 2; fi
allowed="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"  # nproc would obey those two
if (( allowed < needed )); then
  echo "skipped: needs ${needed} CPUs, ${allowed} allowed" >&2
  exit 77
fi
if [[ -n "${name}" ]]; then export "${name}=${allowed}"; fi
exec "$@"
