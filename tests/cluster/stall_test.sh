#!/usr/bin/env bash
# A stalled or killed rank must end the job with a non-zero status within a bounded time (never
# a hang); a stall must be reported by the live ranks, naming the missing rank.
#   stall_test.sh MPIEXEC STALL_PROBE sleep|kill RANKS
set -uo pipefail
mpiexec="$1"; probe="$2"; mode="$3"; ranks="$4"
victim=1
start=$(date +%s)
output="$(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 60 \
  "${mpiexec}" -np "${ranks}" --oversubscribe --bind-to none "${probe}" "${mode}" "${victim}" 20 2>&1)"
status=$?
elapsed=$(( $(date +%s) - start ))
echo "${output}" | tail -n 20
echo "exit status ${status} after ${elapsed} s"
[[ ${status} -ne 0 ]] || { echo "FAIL: the job exited 0"; exit 1; }
[[ ${status} -ne 124 ]] || { echo "FAIL: the job hung until the 60 s timeout"; exit 1; }
[[ ${elapsed} -lt 20 ]] || { echo "FAIL: took ${elapsed} s (the stall limit is 3 s)"; exit 1; }
if [[ "${mode}" == sleep ]]; then
  grep -q "stall: collective #3" <<<"${output}" || { echo "FAIL: no stall report"; exit 1; }
  grep -q "rank ${victim}: alive but has not reached collective #3" <<<"${output}" \
    || { echo "FAIL: the report does not name rank ${victim}"; exit 1; }
fi
echo "PASS"
