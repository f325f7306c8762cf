#!/usr/bin/env bash
# slurm/train_preemptible.sbatch's decisions after `srun` returns, without Slurm: fake `srun`
# (exits with FAKE_STATUS), `scontrol` (logs its call, exits with FAKE_SCONTROL) and `sleep`
# (returns at once) come first on the PATH.
#   preemptible_template_test.sh
# Checked: 85 requeues; 75 requeues only with CMAF_STALL_REQUEUES > 0 and at most that many
# times per run folder (the lines of RUN/stall-requeues.log); no requeue when that file cannot
# be written or read; a failed scontrol requeue is tried three times and leaves the trainer's
# status as the job's; a bad CMAF_STALL_REQUEUES stops the script before srun.
set -euo pipefail
template="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/slurm/train_preemptible.sbatch"
work="$(mktemp -d)"
trap 'chmod -R u+rwx "${work}" 2>/dev/null; rm -rf "${work}"' EXIT
mkdir -p "${work}/bin" "${work}/run"
printf '#!/bin/sh\necho srun >> "%s/calls"\nexit "${FAKE_STATUS}"\n' "${work}" > "${work}/bin/srun"
printf '#!/bin/sh\necho "scontrol $*" >> "%s/calls"\nexit "${FAKE_SCONTROL:-0}"\n' "${work}" > "${work}/bin/scontrol"
printf '#!/bin/sh\nexit 0\n' > "${work}/bin/sleep"
chmod +x "${work}/bin/"*
fail() { echo "FAIL: $*" >&2; exit 1; }
# run STATUS [VAR=VALUE...]: the template's exit status; its output in ${work}/out, calls in ${work}/calls
run() {
  local status="$1"
  shift
  rm -f "${work}/calls"
  touch "${work}/calls"
  local rc=0
  env PATH="${work}/bin:${PATH}" FAKE_STATUS="${status}" SLURM_JOB_NAME=t SLURM_JOB_ID=42 SLURM_JOB_NODELIST=n[1-2] \
    CMAF_RUN_DIR="${work}/run" "$@" bash "${template}" > "${work}/out" 2>&1 || rc=$?
  echo "${rc}"
}
requeues() { grep -c "^scontrol requeue 42$" "${work}/calls" || true; }

[[ "$(run 0)" == 0 && "$(requeues)" == 0 ]] || fail "a finished run was requeued"
[[ "$(run 85)" == 0 && "$(requeues)" == 1 ]] || fail "a checkpointed stop (85) was not requeued"
[[ "$(run 75)" == 75 && "$(requeues)" == 0 ]] || fail "a stall was requeued without CMAF_STALL_REQUEUES"
[[ "$(run 1 CMAF_STALL_REQUEUES=2)" == 1 && "$(requeues)" == 0 ]] || fail "an error (1) was requeued"
for n in 1 2; do
  [[ "$(run 75 CMAF_STALL_REQUEUES=02)" == 0 && "$(requeues)" == 1 ]] || fail "stall ${n} of 2 was not requeued"
  grep -q "stall requeue ${n} of 2" "${work}/out" || fail "no 'stall requeue ${n} of 2' line: $(cat "${work}/out")"
done
[[ "$(run 75 CMAF_STALL_REQUEUES=2)" == 75 && "$(requeues)" == 0 ]] || fail "a third stall was requeued"
grep -q "not requeueing, 2 stall requeue(s) of this run folder already" "${work}/out" || fail "no refusal line"
[[ "$(grep -c "job 42 nodes n\[1-2\]" "${work}/run/stall-requeues.log")" == 2 ]] || fail "stall-requeues.log"
# No count, no requeue: a run folder that does not exist, a log that cannot be read.
[[ "$(run 75 CMAF_STALL_REQUEUES=2 CMAF_RUN_DIR="${work}/missing")" == 75 && "$(requeues)" == 0 ]] \
  || fail "a stall without a run folder was requeued"
grep -q "cannot write ${work}/missing/stall-requeues.log" "${work}/out" || fail "no 'cannot write' line"
if [[ "$(id -u)" != 0 ]]; then  # root reads any file
  rm -f "${work}/run/stall-requeues.log"
  touch "${work}/run/stall-requeues.log"
  chmod 200 "${work}/run/stall-requeues.log"
  [[ "$(run 75 CMAF_STALL_REQUEUES=2)" == 75 && "$(requeues)" == 0 ]] || fail "an unreadable count was requeued"
fi
# scontrol fails: three tries, then the trainer's status.
rm -f "${work}/run/stall-requeues.log"
[[ "$(run 75 CMAF_STALL_REQUEUES=1 FAKE_SCONTROL=1)" == 75 && "$(requeues)" == 3 ]] \
  || fail "a failed requeue of a stall: not 3 tries and status 75"
[[ "$(run 85 FAKE_SCONTROL=1)" == 85 && "$(requeues)" == 3 ]] || fail "a failed requeue of 85: not 3 tries and status 85"
# A bad count stops before srun.
[[ "$(run 0 CMAF_STALL_REQUEUES=two)" == 2 ]] || fail "CMAF_STALL_REQUEUES=two was accepted"
grep -q "CMAF_STALL_REQUEUES=two: expected a count" "${work}/out" || fail "no error naming CMAF_STALL_REQUEUES"
! grep -q srun "${work}/calls" || fail "srun ran with a bad CMAF_STALL_REQUEUES"
echo "preemptible template: 85 requeued; 75 requeued twice of CMAF_STALL_REQUEUES=2, then not; no count, no requeue"
