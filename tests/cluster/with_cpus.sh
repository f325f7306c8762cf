#!/usr/bin/env bash
# with_cpus.sh N COMMAND [ARGS...]: runs COMMAND when this process may run on at least N CPUs,
# else exits 77 (ctest's skip code for such tests).
set -euo pipefail
needed="$1"
shift
allowed="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"  # nproc would obey those two
if (( allowed < needed )); then
  echo "skipped: needs ${needed} CPUs, ${allowed} allowed" >&2
  exit 77
fi
exec "$@"
