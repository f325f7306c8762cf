#!/usr/bin/env bash
# The stall detector's heartbeat channel at several job sizes, all on this machine
# (mpirun --oversubscribe): the CPU time a rank spends on it, idle and waiting in a collective,
# all to all and gathered at rank 0; then, at the largest size, a stall: how long from the wait's
# start to the job's end, with the stall limit, and how many ranks logged the diagnosis.
# CPU time is what each process used (getrusage), so it holds with more ranks than cores; wall
# times (the stall's) do not, with a hundred ranks on two cores: they are an upper bound. The stall
# job's whole output is kept in ${TMPDIR:-/tmp}/heartbeat_scale_stall.log.
#   bench/heartbeat_scale.sh [SECONDS] [RANKS...]      (default: 10 s windows; 8 64 128 ranks)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CMAF_HEARTBEAT_SCALE:-${here}/build/bench/heartbeat_scale}"
seconds="${1:-10}"
shift $(( $# < 1 ? $# : 1 ))
sizes=("$@")
(( ${#sizes[@]} )) || sizes=(8 64 128)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[[ -x "${bin}" ]] || { echo "heartbeat_scale.sh: ${bin} is not built (cmake --build build --target heartbeat_scale)" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) $(git -C "${here}" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
launch() {  # RANKS ARGS...: one job; its summary line, or the job's last lines and exit 1
  local ranks="$1"; shift
  local out
  if ! out="$(mpirun --oversubscribe --bind-to none -np "${ranks}" "${bin}" "$@" 2>&1)"; then
    echo "heartbeat_scale.sh: ${ranks} ranks, $*: failed:" >&2; tail -n 15 <<<"${out}" >&2; return 1
  fi
  grep '^heartbeat_scale: ' <<<"${out}" || { tail -n 15 <<<"${out}" >&2; return 1; }
}
largest=0
for ranks in "${sizes[@]}"; do
  (( ranks > largest )) && largest="${ranks}"
  launch "${ranks}" none "${seconds}"
  for mode in idle waiting; do
    launch "${ranks}" "${mode}" "${seconds}"  # all to all up to 64 ranks, gathered above
    (( ranks <= 64 )) && launch "${ranks}" "${mode}" "${seconds}" 1  # gathered, forced
  done
done
# The stall: the last rank never enters; the others wait, with a 10 s limit.
limit=10
start="$(date +%s.%N)"
set +e
out="$(mpirun --oversubscribe --bind-to none -np "${largest}" "${bin}" stall "${limit}" 2>&1)"
status=$?
set -e
end="$(date +%s.%N)"
saved="${TMPDIR:-/tmp}/heartbeat_scale_stall.log"
printf '%s\n' "${out}" > "${saved}"
waiting_from="$({ grep -o 'waiting from [0-9.]*' <<<"${out}" || true; } | awk '{ print $3 }')"
[[ -n "${waiting_from}" ]] || { echo "heartbeat_scale.sh: the stall job did not start:" >&2; tail -n 15 <<<"${out}" >&2; exit 1; }
stall_lines="$(grep -oE '\[rank [0-9]+ on [^]]*\] stall(: collective)?' <<<"${out}" || true)"  # one per rank and kind
logged="$(grep -oE '^\[rank [0-9]+ ' <<<"${stall_lines}" | sort -u | wc -l)"
reporters="$({ grep ': collective$' <<<"${stall_lines}" || true; } | sort -u | wc -l)"
# A reporter that no peer had told yet announces the stall to every rank, a told one only to the
# next; the report's last line says which (the rank is on its first line, with others between).
announcers="$(grep -cE 'aborting the job \(exit status 75\)$' <<<"${out}" || true)"
victim_named="$(grep -cE "rank $(( largest - 1 )) on [^:]*: alive but has not reached collective #1" <<<"${out}" || true)"
awk -v n="${largest}" -v l="${limit}" -v s="${status}" -v w="${waiting_from}" -v b="${start}" -v e="${end}" \
    -v g="${logged}" -v r="${reporters}" -v a="${announcers}" -v v="${victim_named}" 'BEGIN {
  printf "stall: %d ranks, limit %d s: exit status %d, job ended %.1f s after the wait began (%.1f s after the launch);", n, l, s, e - w, e - b
  printf " %d of %d ranks logged the diagnosis (%d found the stall themselves, %d of them untold, announcing it to every rank),", g, n, r, a
  printf " %d lines name rank %d as not arrived\n", v, n - 1
}'
silent="$(comm -23 <(seq 0 $(( largest - 1 )) | sort) \
  <({ grep -oE '^\[rank [0-9]+' <<<"${stall_lines}" || true; } | grep -oE '[0-9]+' | sort -u) | sort -n | tr '\n' ' ')"
[[ -z "${silent}" ]] || echo "stall: ranks that logged no diagnosis before MPI_Abort: ${silent}(their other lines: ${saved})"
(( status == 75 )) || { echo "heartbeat_scale.sh: the stall job exited ${status}, expected 75 (stall)" >&2; tail -n 20 <<<"${out}" >&2; exit 1; }
