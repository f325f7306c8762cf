#!/usr/bin/env bash
# Every MPI function the project calls (cluster/, core/, launch/, common/) is wrapped by the MPI
# audit (mpi_thread_audit.cpp), which otherwise would not see, below MPI_THREAD_MULTIPLE, a call
# made off the MPI thread.   mpi_audit_coverage.sh SOURCE_DIR
set -euo pipefail
root="$1"
audit="${root}/tests/cluster/mpi_thread_audit.cpp"
used="$(grep -rhoE '\bMPI_[A-Z][a-z_]+\(' "${root}"/cluster "${root}"/core "${root}"/launch "${root}"/common \
  | sed -e 's/^MPI_//' -e 's/($//' | sort -u)"
wrapped="$({ grep -oE 'CMAF_AUDITED\([A-Za-z_]+' "${audit}" | sed 's/^CMAF_AUDITED(//'
             grep -oE '^int MPI_[A-Za-z_]+\(' "${audit}" | sed -e 's/^int MPI_//' -e 's/($//'; } | sort -u)"
[[ -n "${used}" && -n "${wrapped}" ]] || { echo "FAIL: found no MPI calls (used: ${used:-none}; wrapped: ${wrapped:-none})"; exit 1; }
missing="$(comm -23 <(printf '%s\n' "${used}") <(printf '%s\n' "${wrapped}"))"
if [[ -n "${missing}" ]]; then
  echo "FAIL: MPI functions called but not wrapped by ${audit}:" ${missing}
  exit 1
fi
echo "all $(wc -l <<<"${used}") MPI functions the project calls are audited"
