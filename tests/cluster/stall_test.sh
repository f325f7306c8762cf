#!/usr/bin/env bash
# A stalled or killed rank must end the job with a non-zero status within a bounded time (never
# a hang); a stall must be reported by every live rank (the stalled one included), naming the
# missing rank. A rank late to
# MPI start-up, to the communicator's set-up or to MPI_Finalize must be reported by the others
# with the phase and the call they waited in, and end the job with status 75.
# A job suspended (every rank stopped) for longer than the stall limit must go on when resumed.
# A rank busy with work of its own (begin_local_work) past the stall limit but within the busy limit
# (10 s) is waited for; past the busy limit it is a stall like any other.
# Once a busy rank has arrived, the collective has the stall limit again, from then, to complete
# (busy-arrive, on a second channel with a 6 s limit: 2 s after the busy rank's arrival); one that
# then never completes is a stall one limit later (busy-arrive-stall); a busy rank that stops
# (SIGSTOP) instead of arriving is reported silent at once (busy-stop).
# A second heartbeat channel (the NCCL backend's) reports a sleeping rank the same way.
# A stopped rank (SIGSTOP, heartbeats and all) is reported silent.
# Once SIGTERM has asked the others to end (term), a stopped rank ends the job within seconds,
# not at the 40 s stall limit; a rank that is only slow (term-alive: asleep 8 s, its heartbeats
# going on) is still waited for.
#   stall_test.sh MPIEXEC STALL_PROBE MODE RANKS
#     MODE: sleep|channel|channel-told|kill|kill-recovery|stop|term|term-alive|late-start|late-communicator|
#           late-finish|suspend
#   stall_test.sh MPIEXEC STALL_PROBE busy|busy-arrive|busy-arrive-stall|busy-stop RANKS SECONDS
# STALL_PROBE_GATHERED=1: the heartbeats go through rank 0 (as above 64 ranks); STALL_VICTIM=R:
# rank R is the one that sleeps (1 by default); STALL_VICTIM_HOST: its host, as the reports must
# name it (this one's by default).
set -uo pipefail
mpiexec="$1"; probe="$2"; mode="$3"; ranks="$4"
victim="${STALL_VICTIM:-1}"  # the rank that sleeps, is killed or is busy
victim_host="${STALL_VICTIM_HOST:-$(hostname)}"  # its host, as the reports name it
seconds=20
[[ "${mode}" != suspend ]] || seconds=6  # twice the 3 s stall limit
[[ "${mode}" != term-alive ]] || seconds=8  # over 12 heartbeat periods (2.4 s), within the 40 s limit
[[ "${mode}" != busy* ]] || seconds="$5"
# kill-recovery: the kill, under `mpirun --enable-recovery`, which leaves the job running when a
# rank dies: the live ranks must find the dead rank themselves (silent on the heartbeat channel).
probe_mode="${mode}"
launcher_options=()
if [[ "${mode}" == kill-recovery ]]; then probe_mode=kill; launcher_options=(--enable-recovery); fi
start=$(date +%s)
output="$(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 60 "${mpiexec}" "${launcher_options[@]}" \
  -np "${ranks}" --oversubscribe --bind-to none "${probe}" "${probe_mode}" "${victim}" "${seconds}" 2>&1)"
status=$?
elapsed=$(( $(date +%s) - start ))
echo "${output}" | tail -n 20
echo "exit status ${status} after ${elapsed} s"
# A rank in the stalled collective (#3) logged its own report, or its view of a peer's.
live_rank_logged() {
  grep -qE "\[rank $1 on [^]]*\] stall(: collective #3 | reported by rank [0-9]+ at collective #3: this rank is in it too)" \
    <<<"${output}" || { echo "FAIL: live rank $1 logged no stall report"; exit 1; }
}
# Under CMAF_MPI_THREAD_LEVEL, rank 0's start-up line shows that MPI gave that level (a funneled
# job run at multiple would leave the MPI audit nothing to check). Late-start never gets there.
if [[ -n "${CMAF_MPI_THREAD_LEVEL:-}" && "${mode}" != late-start ]]; then
  start_line="$(grep -F "stall_probe: rank 0/${ranks} " <<<"${output}" || true)"
  [[ "${start_line}" == *"MPI (thread level ${CMAF_MPI_THREAD_LEVEL}"* ]] \
    || { echo "FAIL: rank 0 did not log MPI thread level ${CMAF_MPI_THREAD_LEVEL}: ${start_line:-no start-up line}"; exit 1; }
fi
if [[ "${mode}" == suspend ]]; then
  [[ ${status} -eq 0 ]] || { echo "FAIL: the resumed job exited ${status}"; exit 1; }
  grep -q "this process was paused for" <<<"${output}" || { echo "FAIL: no rank noticed the pause"; exit 1; }
  if grep -qE "stall: |stall reported|has not finished after|has not completed after" <<<"${output}"; then echo "FAIL: the pause was reported as a stall"; exit 1; fi
  if grep -q "MPI audit:" <<<"${output}"; then echo "FAIL: an MPI call off the MPI thread"; exit 1; fi
  echo "PASS"
  exit 0
fi
if [[ "${mode}" == kill-recovery ]]; then
  # OpenMPI 4.1 under --enable-recovery exits 0 even after MPI_Abort, so its status says nothing
  # here: the ranks' own reports and MPI_Abort's errorcode must show the heartbeat's verdict.
  [[ ${status} -ne 124 ]] || { echo "FAIL: the job hung until the 60 s timeout"; exit 1; }
  ((elapsed < 20)) || { echo "FAIL: took ${elapsed} s (the stall limit is 3 s)"; exit 1; }
  grep -qE "rank ${victim} on ${victim_host}: no heartbeat for [0-9.]+ s \(dead, or stuck without progressing MPI\)" \
    <<<"${output}" || { echo "FAIL: the killed rank ${victim} was not reported silent"; exit 1; }
  for ((r = 0; r < ranks; r++)); do
    ((r == victim)) || live_rank_logged "${r}"
  done
  grep -q "with errorcode 75\." <<<"${output}" || { echo "FAIL: no rank called MPI_Abort with status 75"; exit 1; }
  echo "PASS"
  exit 0
fi
if [[ "${mode}" == term-alive ]]; then
  [[ ${status} -eq 0 ]] || { echo "FAIL: SIGTERM and a rank asleep ${seconds} s: the job exited ${status}"; exit 1; }
  if grep -qE "stall: |stall reported" <<<"${output}"; then echo "FAIL: a live rank was reported as a stall"; exit 1; fi
  echo "PASS"
  exit 0
fi
if [[ "${mode}" == busy-arrive || ( "${mode}" == busy && seconds -lt 10 ) ]]; then
  [[ ${status} -eq 0 ]] || { echo "FAIL: the job with a rank busy ${seconds} s exited ${status}"; exit 1; }
  limit=3
  [[ "${mode}" != busy-arrive ]] || limit=6  # the second channel's own limit
  if ((seconds > limit)); then  # else the busy rank arrives within the limit, and no wait is logged
    grep -q "past the stall limit of ${limit} s, for ranks busy with work of their own" <<<"${output}" \
      || { echo "FAIL: no rank said it waited for a busy rank"; exit 1; }
    busy_line="rank ${victim} on ${victim_host}: alive but has not reached collective #3 (last entered #2; busy"
    grep -qF "${busy_line} with work of its own)" <<<"${output}" \
      || { echo "FAIL: the wait does not name busy rank ${victim}"; exit 1; }
  fi
  if grep -qE "stall: |stall reported" <<<"${output}"; then echo "FAIL: a busy rank was reported as a stall"; exit 1; fi
  echo "PASS"
  exit 0
fi
[[ ${status} -ne 0 ]] || { echo "FAIL: the job exited 0"; exit 1; }
[[ ${status} -ne 124 ]] || { echo "FAIL: the job hung until the 60 s timeout"; exit 1; }
bound=20  # the stall limit is 3 s; with a busy rank, the busy limit of 10 s
[[ "${mode}" != busy* ]] || bound=30
[[ ${elapsed} -lt ${bound} ]] || { echo "FAIL: took ${elapsed} s (the stall limit is 3 s; term: SIGTERM)"; exit 1; }
# Under CMAF_MPI_THREAD_LEVEL=funneled the probe's MPI audit names any call off the MPI thread.
if grep -q "MPI audit:" <<<"${output}"; then grep "MPI audit:" <<<"${output}"; echo "FAIL: an MPI call off the MPI thread"; exit 1; fi
# Rank 0 gathers the heartbeats only with STALL_PROBE_GATHERED=1; it answers unless it is stopped.
if [[ ( "${mode}" != stop && "${mode}" != term ) || "${victim}" != 0 ]] &&
  grep -q "ranks not arrived: unknown here" <<<"${output}"; then
  echo "FAIL: a rank did not get rank 0's table of heartbeats"; exit 1
fi
if [[ "${mode}" == term ]]; then
  cut_short="has waited [0-9.]+ s, and SIGTERM was received \(the job is ending\) while a rank is silent"
  grep -qE "stall: collective #3 \(.*\) ${cut_short}: not waiting out the stall limit of 40 s" <<<"${output}" \
    || { echo "FAIL: no report of a silent rank cut short by SIGTERM"; exit 1; }
fi
if [[ "${mode}" == stop || "${mode}" == term || "${mode}" == busy-stop ]]; then
  [[ ${status} -eq 75 ]] || { echo "FAIL: exit status ${status}, expected 75"; exit 1; }
  if [[ "${STALL_PROBE_GATHERED:-0}" == 1 && "${victim}" == 0 ]]; then
    grep -q "ranks not arrived: unknown here" <<<"${output}" && \
      grep -q "rank 0 on ${victim_host}, which gathers every rank's heartbeats, has not answered this rank's questions" \
        <<<"${output}" \
      || { echo "FAIL: the stopped rank 0 was not reported as not answering"; exit 1; }
  else
    grep -qE "rank ${victim} on ${victim_host}: no heartbeat for [0-9.]+ s \(dead, or stuck without progressing MPI\)" \
      <<<"${output}" \
      || { echo "FAIL: the stopped rank ${victim} was not reported silent"; exit 1; }
  fi
fi
if [[ "${mode}" == channel* ]]; then
  grep -qE "stall: collective #3 \(ncclAllReduce \(stall_probe channel\), 4096 bytes\) has waited [0-9.]+ s, more than the stall limit of 4 s" \
    <<<"${output}" || { echo "FAIL: the second channel's report does not name its call and its own 4 s limit"; exit 1; }
  [[ ${status} -eq 75 ]] || { echo "FAIL: exit status ${status}, expected 75"; exit 1; }
fi
# channel-told: rank 0 (4 s limit) finds the stall and tells every rank; the others (5 s) are told
# before they find it, log their own report all the same, and tell only the next rank.
if [[ "${mode}" == channel-told ]]; then
  told_line="exit status 75; rank 0 announced this stall already)"
  abort_line() { grep -A8 -E "\[rank $1 on [^]]*\] stall: collective #3 " <<<"${output}" | grep -m1 "^aborting the job"; }
  own=0
  for ((r = 1; r < ranks; r++)); do
    ((r == victim)) && continue
    grep -qE "\[rank ${r} on [^]]*\] stall: collective #3 " <<<"${output}" || continue
    own=$((own + 1))
    abort_line "${r}" | grep -qF "${told_line}" \
      || { echo "FAIL: rank ${r} found the stall rank 0 had announced, and did not say it had been told"; exit 1; }
  done
  # Rank 0's own line is the first announcement: never "told already".
  abort_line 0 | grep -qF "announced this stall already" && { echo "FAIL: rank 0, the first to find the stall, says it was told"; exit 1; }
  # Rank 2 reaches its 5 s limit 0.8-1.2 s before rank 0's abort (4 s, one 200 ms period, 2 s grace).
  ((own > 0)) || { echo "FAIL: no rank other than 0 logged its own report: the told path was not run"; exit 1; }
fi
if [[ "${mode}" == sleep || "${mode}" == channel* ]]; then
  grep -q "stall: collective #3" <<<"${output}" || { echo "FAIL: no stall report"; exit 1; }
  grep -q "rank ${victim} on ${victim_host}: alive but has not reached collective #3" <<<"${output}" \
    || { echo "FAIL: the report does not name rank ${victim}"; exit 1; }
  # Every live rank logs the stall: its own report, or its view of the one a peer announced
  # before aborting; the stalled rank says it is the one the others wait for.
  for ((r = 0; r < ranks; r++)); do
    if ((r == victim)); then
      grep -qE "\[rank ${r} on [^]]*\] stall reported by rank [0-9]+ at collective #3: this rank has not reached it \(last entered #[0-9]+\): the others are waiting for it" <<<"${output}" \
        || { echo "FAIL: the stalled rank ${r} did not log that the others wait for it"; exit 1; }
    else
      live_rank_logged "${r}"
    fi
  done
fi
# Gathered, rank 0 always sees the stall first-hand; rank 2 knows of rank 1 only from rank 0's
# table, so its line (its own report, or its view of rank 0's) must name rank 1 too.
if [[ "${STALL_PROBE_GATHERED:-0}" == 1 && "${victim}" == 1 && ( "${mode}" == sleep || "${mode}" == stop ) ]]; then
  expected="rank 1 on ${victim_host}: alive but has not reached collective #3"
  [[ "${mode}" == sleep ]] || expected="rank 1 on ${victim_host}: no heartbeat for"
  grep -A1 -E "\[rank 2 on [^]]*\] stall" <<<"${output}" | grep -q "${expected}" \
    || { echo "FAIL: rank 2's report does not name rank 1 from rank 0's table"; exit 1; }
fi
if [[ "${mode}" == busy-stop ]]; then  # silent at once, not given the stall limit again
  if grep -q "since the ranks busy with work of their own" <<<"${output}"; then
    echo "FAIL: a busy rank that stopped was waited for as if it had arrived"; exit 1
  fi
  # Its work ends (SIGSTOP) at SECONDS = 4 s, silent 2 s later: a stall at the channel's 6 s limit,
  # not one at the 10 s busy limit (a silent rank still counted as busy).
  at_limit="has waited [0-9.]+ s, more than the stall limit of 6 s; ranks not arrived: 1"
  grep -qE "stall: collective #3 \(ncclAllReduce \(stall_probe channel\), 4096 bytes\) ${at_limit}" <<<"${output}" \
    || { echo "FAIL: no stall report at the 6 s stall limit for the silent busy rank"; exit 1; }
  if grep -q "more than the limit for ranks busy with work of their own" <<<"${output}"; then
    echo "FAIL: a busy rank that stopped was waited for up to the busy limit"; exit 1
  fi
fi
late_report() {  # late_report PHASE CALL: a live rank named the phase and the call it waited in
  grep -qF "$1 has not finished after 3 s, the stall limit (still in $2)" <<<"${output}" \
    || { echo "FAIL: no rank reported '$1' waiting in $2"; exit 1; }
  [[ ${status} -eq 75 ]] || { echo "FAIL: exit status ${status}, expected 75"; exit 1; }
}
case "${mode}" in
  busy)
    [[ ${status} -eq 75 ]] || { echo "FAIL: exit status ${status}, expected 75"; exit 1; }
    ((elapsed >= 10)) || { echo "FAIL: aborted after ${elapsed} s, before the 10 s busy limit"; exit 1; }
    grep -q "stall: collective #3 .* more than the limit for ranks busy with work of their own, 10 s" <<<"${output}" \
      || { echo "FAIL: no stall report naming the busy limit"; exit 1; }
    grep -qE "\[rank ${victim} on [^]]*\] stall reported by rank [0-9]+ at collective #3: this rank has not reached it \(last entered #2; busy [0-9.]+ s with work of its own: a long job of its own" <<<"${output}" \
      || { echo "FAIL: the busy rank did not say what it was busy with"; exit 1; }
    ;;
  busy-arrive-stall)
    [[ ${status} -eq 75 ]] || { echo "FAIL: exit status ${status}, expected 75"; exit 1; }
    ((elapsed >= seconds + 5)) || { echo "FAIL: aborted ${elapsed} s in, before a limit (6 s) after the arrival"; exit 1; }
    since_arrival="of which [0-9.]+ s since the ranks busy with work of their own were last seen missing"
    grep -qE "stall: collective #3 \(ncclAllReduce \(stall_probe channel\), 4096 bytes\) has waited [0-9.]+ s, \
${since_arrival}, more than the stall limit of 6 s; ranks not arrived: 0" <<<"${output}" \
      || { echo "FAIL: no stall report counting from the busy rank's arrival"; exit 1; }
    ;;
  late-start) late_report "MPI start-up" "MPI_Init_thread" ;;
  late-communicator) late_report "the communicator's set-up" "MPI_Comm_dup" ;;
  late-finish) late_report "MPI shut-down" "MPI_Ibarrier before MPI_Finalize" ;;
esac
echo "PASS"
