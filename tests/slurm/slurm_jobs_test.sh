#!/usr/bin/env bash
# The sbatch templates of slurm/ submitted to the real Slurm of scripts/local-slurm.sh, started
# with two nodes on this machine (CMAF_SLURM_NODES=2).
#
#   slurm_jobs_test.sh start|stop SLURM_DIR
#   slurm_jobs_test.sh MODE SLURM_DIR CMAFORMER
#     MODE: train|twonodes|preempt|preempt2nodes|stallrequeue|gpu|rankerror|nopmix|killrank|killrank-kbe|
#           localrundir
#   slurm_jobs_test.sh preparray SLURM_DIR CMAFORMER MAKE_NNUNET_FOLDER
#   slurm_jobs_test.sh freeze SLURM_DIR CMAFORMER STALL_PROBE
#     train    2-rank CPU training job completes with its checkpoint; then the eval job on that
#              checkpoint and the all-reduce benchmark job
#     twonodes the training template on 2 nodes x 2 tasks (the instance has two Slurm nodes,
#              CMAF_SLURM_NODES=2): 4 ranks, gradients summed in node shared memory then
#              MPI_Allreduce between the nodes, checkpoint written; the eval template on both
#              nodes writes the same files as one process; the all-reduce benchmark across both
#              nodes (#wrong 0)
#     freeze   a node that hangs: in a 2-node x 2-task step, rank 2 stops (SIGSTOP) every process
#              of its node, slurmstepd included, without closing a connection; the ranks on
#              the other node report both silent ranks after the 3 s stall limit and exit 75,
#              and srun ends within a bounded time; afterwards the stopped processes are
#              continued so that Slurm can clean up
#     preparray  prep as a 3-task job array, then the dependent merge job: the dataset equals
#              one prep run's (cases, splits)
#     gpu      the GPU template on 2 nodes x 2 stand-in GPUs (the instance is started with
#              CMAF_SLURM_GPUS=2 where device nodes can be made): Slurm accepts and schedules
#              it, srun starts one rank per GPU with CUDA_VISIBLE_DEVICES set, and each rank
#              stops at start-up with the no-CUDA-device error naming itself and its node-local
#              rank, which picks the device (this machine and build have no GPU; training on
#              one is not tested here)
#     preempt  the preemptible job is signalled (scancel --signal=USR1 --batch), checkpoints,
#              requeues itself, resumes from that checkpoint and finishes: the step count proves
#              it did not restart from zero
#     preempt2nodes  the same with 2 nodes x 2 tasks: srun forwards the signal to the ranks of
#              both nodes, they agree on one step, and the checkpoint holds all 4 ranks' parts
#     stallrequeue  the preemptible template with CMAF_STALL_REQUEUES=1 and a 6 s stall limit (over
#              two whole runs, 3 s left a loaded machine's healthy ranks little room):
#              task 1 is stopped (SIGSTOP) once the ranks train; rank 0 aborts the job (75), the
#              script requeues it, it resumes from a checkpoint; task 1 is stopped again in the
#              resumed run, and this second stall is not requeued (the job fails with 75, one
#              line in RUN/stall-requeues.log, one restart)
#     rankerror  the eval template on 2 tasks where one test case is damaged, so one rank fails
#              while the other waits for it: the job fails within a minute with that rank's
#              error and exit code 1 (MPI_Abort through Slurm's PMIx), not at the stall limit
#     nopmix   srun --mpi=none with 2 tasks: each task stops at start-up with an error naming
#              srun --mpi=pmix, instead of training alone as a world of one
#     killrank the training template on 2 tasks, with the default 300 s stall limit; once it
#              trains, task 1 is killed (SIGKILL, as the kernel's OOM killer does): the job fails
#              within a minute, not when the surviving rank's stall limit runs out (Slurm's PMIx
#              plugin cancels the step when a task dies; measured: 1 s)
#     killrank-kbe  the same under srun --kill-on-bad-exit=1 (SLURM_KILL_BAD_EXIT=1): srun sends
#              the survivor SIGTERM, a request to checkpoint, which cannot be agreed with the dead
#              rank; the survivor must end the job within 20 s with the stall report naming rank 1
#              silent, not be killed after KillWait (30 s; it was, at 31 s, before the heartbeat
#              monitor took note of the signal)
#     localrundir  the training template on 2 nodes x 1 task with the run folder on node-local
#              storage (each node's own folder at TmpFS, as /tmp on a cluster): the job must
#              fail before training, task 1 saying from cmaf-node2 that the folder is not the
#              one rank 0 writes to (before the check it trained, then failed at the first
#              checkpoint with an internal error)
# Exit 77 (ctest: skipped) when not root or Slurm is not installed.
#
# A mode that fails while one of its job outputs holds OpenMPI's report of a rank killed by a
# segmentation fault at address 0 (the start-up crash of docs/troubleshooting.md: OpenMPI 4.1
# can take a peer's first message before it is ready for it while MPI_Init waits on Slurm's
# PMIx fence) runs once more, from a fresh job folder, after a RETRY line that shows the report.
# The second run's result stands, so a crash that happens every time still fails the test.
set -euo pipefail
mode="$1"
slurm_dir="$2"
export CMAF_SLURM_PORT=16817  # not the default 6817: a user's own local Slurm may hold it
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
startup_crash() {  # startup_crash FILE...: the first with OpenMPI's report of a SIGSEGV at address 0
  grep -l "Signal: Segmentation fault (11)" "$@" 2> /dev/null | xargs -r grep -l "Failing at address: (nil)" | head -1
}
fail() {
  echo "FAIL: $*" >&2
  local crashed=""
  if [[ -n "${work:-}" && -d "${work}" ]]; then crashed="$(startup_crash "${work}"/*.out)"; fi
  if [[ -n "${crashed}" ]]; then
    {
      echo "a rank crashed at address 0 (${crashed##*/}):"
      grep -E "Signal|Failing at|\[ *[0-9]+\]|srun: error" "${crashed}" | head -20 || true
    } | tee -a "${CMAF_SLURM_TEST_CRASHES:-/dev/null}" >&2
  fi
  exit 1
}
case "${mode}" in
  start | stop) ;;
  *)
    # The first run reports a start-up crash into a file of this (outer) run.
    if [[ -z "${CMAF_SLURM_TEST_CRASHES:-}" ]]; then
      crashes="$(mktemp)"
      status=0
      CMAF_SLURM_TEST_CRASHES="${crashes}" bash "${BASH_SOURCE[0]}" "$@" || status=$?
      if ((status == 0 || status == 77)) || [[ ! -s "${crashes}" ]]; then rm -f "${crashes}"; exit "${status}"; fi
      rm -f "${crashes}"
      echo "RETRY: ${mode}: a rank crashed at address 0 in a failed job (the OpenMPI 4.1 start-up crash of" \
           "docs/troubleshooting.md); running ${mode} once more"
      CMAF_SLURM_TEST_CRASHES=/dev/null exec bash "${BASH_SOURCE[0]}" "$@"
    fi
    ;;
esac

if [[ "$(id -u)" != 0 ]] || ! command -v slurmctld > /dev/null; then
  echo "skipped: needs root and Debian's slurmctld/slurmd/munge (scripts/setup.sh installs them)"
  exit 77
fi
case "${mode}" in
  start)
    # Stand-in GPUs for the GPU template's test, where device nodes can be created.
    mkdir -p "${slurm_dir}"
    if mknod "${slurm_dir}/probe" c 1 3 2> /dev/null && echo > "${slurm_dir}/probe"; then export CMAF_SLURM_GPUS=2; fi
    rm -f "${slurm_dir}/probe"
    # Two Slurm nodes on this machine (their own host names and TmpFS: namespaces), for the
    # several-node jobs; one where no namespace can be made (those jobs are then skipped).
    if unshare --mount --uts true 2> /dev/null; then
      export CMAF_SLURM_NODES=2
    else
      echo "one Slurm node: unshare --mount --uts fails here, the 2-node tests will be skipped"
    fi
    exec "${here}/scripts/local-slurm.sh" start "${slurm_dir}" ;;
  stop) exec "${here}/scripts/local-slurm.sh" stop "${slurm_dir}" ;;
esac

bin="$3"
export SLURM_CONF="${slurm_dir}/slurm.conf"
[[ -f "${SLURM_CONF}" ]] || fail "no local Slurm under ${slurm_dir} (the start fixture failed?)"
work="$(mktemp -d "${slurm_dir}/job-XXXXXX")"
trap 'scancel --quiet --name=cmaf-test-${mode} 2>/dev/null || true; rm -rf "${work}"' EXIT

"${bin}" synth --out "${work}/ds" --cases 8 --size 64 --slices 10 --classes 3 --labeled-cases 3 \
  --val-cases 1 --test-cases 2 --seed 5 > /dev/null 2>&1

nodes_up() { sinfo -h -N -t idle,mix,alloc -o %N | sort -u | wc -l; }
need_two_nodes() {
  (($(nodes_up) >= 2)) || { echo "skipped: the local Slurm has one node (no namespaces for a second)"; exit 77; }
}

job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2; }
job_field() { scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2; }

task_pid() {  # task_pid JOB TASK: the pid of that task's cmaformer process
  local p
  for p in /proc/[0-9]*; do
    [[ "$(cat "${p}/comm" 2> /dev/null)" == cmaformer ]] || continue
    if tr '\0' '\n' < "${p}/environ" 2> /dev/null | grep -qx "SLURM_JOB_ID=$1" &&
       tr '\0' '\n' < "${p}/environ" 2> /dev/null | grep -qx "SLURM_PROCID=$2"; then
      echo "${p#/proc/}"; return 0
    fi
  done
  return 1
}

wait_done() {  # wait_done JOB SECONDS: until the job completed, failed or was cancelled
  local job="$1" limit="$2" state=""
  for ((i = 0; i < limit; i++)); do
    state="$(job_state "${job}")"
    case "${state}" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) echo "${state}"; return 0 ;; esac
    sleep 1
  done
  echo "TIMEOUT_WAITING(${state})"
}

submit() {  # submit TEMPLATE NAME VAR=VALUE...: prints the job id (SBATCH_EXTRA: more options)
  local template="$1" name="$2"
  shift 2
  local exports="ALL,CMAF_BIN=${bin}"
  for kv in "$@"; do exports="${exports},${kv}"; done
  # shellcheck disable=SC2086  # SBATCH_EXTRA is a list of options on purpose
  sbatch --parsable --job-name="${name}" --chdir="${work}" --export="${exports}" ${SBATCH_EXTRA:-} \
    "${here}/slurm/${template}"
}

case "${mode}" in
  train)
    job="$(submit train_cpu.sbatch cmaf-test-train CMAF_DATA="${work}/ds" CMAF_RUN_DIR="${work}/run" \
      CMAF_TRAIN_ARGS="--preset tiny --input-size 64 --steps 8 --checkpoint-every 4")"
    state="$(wait_done "${job}" 240)"
    cat "${work}/cmaf-test-train-${job}.out" | grep -v '^[IW]2' || true
    [[ "${state}" == COMPLETED && "$(job_field "${job}" ExitCode)" == 0:0 ]] || fail "training job ${job}: ${state}"
    [[ -f "${work}/run/checkpoints/step-00000008/MANIFEST.json" ]] || fail "no step-8 checkpoint"
    [[ -f "${work}/run/checkpoints/step-00000008/rank-00001.pt" ]] || fail "the job did not run 2 ranks"
    job="$(submit eval.sbatch cmaf-test-train CMAF_CHECKPOINT="${work}/run/checkpoints/step-00000008" \
      CMAF_DATA="${work}/ds" CMAF_OUT="${work}/eval")"
    state="$(wait_done "${job}" 120)"
    [[ "${state}" == COMPLETED ]] || { cat "${work}"/*"-${job}.out"; fail "eval job ${job}: ${state}"; }
    [[ -f "${work}/eval/metrics.md" ]] || fail "the eval job wrote no metrics"
    job="$(submit bench_allreduce.sbatch cmaf-test-train CMAF_BENCH_ARGS="--iterations 1 --max-mib 1 --preset tiny")"
    state="$(wait_done "${job}" 120)"
    [[ "${state}" == COMPLETED ]] || { cat "${work}"/*"-${job}.out"; fail "benchmark job ${job}: ${state}"; }
    grep -q "#wrong" "${work}/cmaf-test-train-${job}.out" || fail "the benchmark printed no checked results"
    echo "train, eval and benchmark jobs completed"
    ;;
  twonodes)
    need_two_nodes
    job="$(sbatch --parsable --job-name=cmaf-test-twonodes --chdir="${work}" --nodes=2 --ntasks-per-node=2 \
      --cpus-per-task=1 --time=10 \
      --export="ALL,CMAF_BIN=${bin},CMAF_DATA=${work}/ds,CMAF_RUN_DIR=${work}/run,CMAF_TRAIN_ARGS=--preset tiny --input-size 64 --steps 6 --checkpoint-every 3" \
      "${here}/slurm/train_cpu.sbatch")"
    state="$(wait_done "${job}" 300)"
    out="${work}/cmaf-test-twonodes-${job}.out"
    grep -v '^[IW]2' "${out}" || true
    [[ "${state}" == COMPLETED && "$(job_field "${job}" ExitCode)" == 0:0 ]] || { cat "${out}"; fail "2-node training job ${job}: ${state}"; }
    [[ "$(job_field "${job}" NumNodes)" == 2 ]] || fail "the job ran on $(job_field "${job}" NumNodes) node(s)"
    # Rank 0 (which logs) names its host, its place on the node and the job's nodes.
    grep -q "rank 0/4 (local 0/2) on cmaf-node1, .* nodes cmaf-node\[1-2\]" "${out}" \
      || fail "rank 0 did not report local rank 0 of 2 on cmaf-node1 in a job on cmaf-node[1-2]"
    grep -q "float sums through node shared memory (2 ranks a node, then MPI_Allreduce between 2 nodes)" "${out}" \
      || fail "the gradients did not take the two-node sum"
    [[ -f "${work}/run/checkpoints/step-00000006/rank-00003.pt" ]] || fail "no step-6 checkpoint of rank 3"
    # Evaluation spread over both nodes (2 test cases, 4 ranks: two ranks get none) writes the
    # same files, byte for byte, as one process.
    job="$(sbatch --parsable --job-name=cmaf-test-twonodes --chdir="${work}" --nodes=2 --ntasks-per-node=2 \
      --export="ALL,CMAF_BIN=${bin},CMAF_CHECKPOINT=${work}/run/checkpoints/step-00000006,CMAF_DATA=${work}/ds,CMAF_OUT=${work}/eval4" \
      "${here}/slurm/eval.sbatch")"
    state="$(wait_done "${job}" 120)"
    [[ "${state}" == COMPLETED ]] || { cat "${work}"/*"-${job}.out"; fail "2-node eval job ${job}: ${state}"; }
    "${bin}" eval --checkpoint "${work}/run/checkpoints/step-00000006" --data "${work}/ds" --out "${work}/eval1" \
      --threads 1 > "${work}/eval1.log" 2>&1 || { cat "${work}/eval1.log"; fail "single-process eval"; }
    for f in metrics.json metrics.csv metrics.md; do
      cmp "${work}/eval1/${f}" "${work}/eval4/${f}" || fail "${f} of the 2-node eval differs from one process's"
    done
    job="$(sbatch --parsable --job-name=cmaf-test-twonodes --chdir="${work}" --nodes=2 --ntasks-per-node=2 \
      --export="ALL,CMAF_BIN=${bin},CMAF_BENCH_ARGS=--iterations 1 --max-mib 4 --preset tiny" \
      "${here}/slurm/bench_allreduce.sbatch")"
    state="$(wait_done "${job}" 120)"
    out="$(ls "${work}"/*"-${job}.out")"
    [[ "${state}" == COMPLETED ]] || { cat "${out}"; fail "2-node benchmark job ${job}: ${state}"; }
    grep -q "^# 4 ranks on 2 nodes; float sums: node shared memory, then MPI_Allreduce between nodes" "${out}" \
      || { cat "${out}"; fail "the benchmark did not run on 2 nodes of 2 ranks"; }
    # The size table's 5th column and the reducer lines count wrong elements.
    rows="$(awk '/^ +[0-9]+ / {n++} END {print n + 0}' "${out}")"
    ((rows >= 5)) || { cat "${out}"; fail "the benchmark printed ${rows} sizes"; }
    awk '/^ +[0-9]+ / && $5 != 0 {bad = 1} END {exit bad}' "${out}" || { cat "${out}"; fail "wrong elements in a size"; }
    ! grep -E "#wrong [1-9]" "${out}" || fail "the reducer benchmark found wrong elements"
    echo "twonodes: 4 ranks on cmaf-node1 and cmaf-node2, two-node sum, checkpoint written; eval as one" \
         "process's; benchmark #wrong 0"
    ;;
  rankerror)
    "${bin}" train --data "${work}/ds" --run-dir "${work}/run" --preset tiny --input-size 64 --steps 2 \
      --checkpoint-every 2 --threads 1 > "${work}/train.log" 2>&1 || { cat "${work}/train.log"; fail "training"; }
    damaged="${work}/ds/$(jq -r '[.cases[] | select(.split == "test")][0].file' "${work}/ds/manifest.json")"
    [[ -f "${damaged}" ]] || fail "no test case file (${damaged})"
    dd if=/dev/zero of="${damaged}" bs=1 seek=$(($(stat -c %s "${damaged}") / 2)) count=4096 conv=notrunc 2> /dev/null
    start=$(date +%s)
    job="$(SBATCH_EXTRA="--time=5" submit eval.sbatch cmaf-test-rankerror \
      CMAF_CHECKPOINT="${work}/run/checkpoints/step-00000002" CMAF_DATA="${work}/ds" CMAF_OUT="${work}/eval")"
    state="$(wait_done "${job}" 150)"
    elapsed=$(( $(date +%s) - start ))
    out="${work}/cmaf-test-rankerror-${job}.out"
    grep -v '^I2' "${out}" || true
    [[ "${state}" == FAILED && "$(job_field "${job}" ExitCode)" == 1:0 ]] \
      || fail "eval job ${job} with a damaged case: ${state}, exit code $(job_field "${job}" ExitCode), expected FAILED 1:0"
    ((elapsed < 90)) || fail "the job took ${elapsed} s to fail (the stall limit is 300 s)"
    [[ "$(grep -c "^error: \[rank [01]\] ${damaged}: dataset 'image'" "${out}")" == 1 ]] \
      || fail "expected one rank's error naming ${damaged}"
    echo "rankerror: one rank's damaged case failed the 2-task eval job in ${elapsed} s with its error, exit code 1"
    ;;
  killrank | killrank-kbe)
    kbe=0
    [[ "${mode}" == killrank ]] || kbe=1
    job="$(SBATCH_EXTRA="--time=10" submit train_cpu.sbatch cmaf-test-killrank CMAF_DATA="${work}/ds" \
      CMAF_RUN_DIR="${work}/run" CMAF_TRAIN_ARGS="--preset tiny --input-size 64 --steps 100000 --log-every 1" \
      SLURM_KILL_BAD_EXIT="${kbe}")"
    victim=""
    for ((i = 0; i < 180; i++)); do  # until both ranks train (a step in the metrics)
      if grep -qs '"step"' "${work}/run/metrics.jsonl" && victim="$(task_pid "${job}" 1)"; then break; fi
      victim=""
      [[ "$(job_state "${job}")" =~ ^(PENDING|RUNNING|CONFIGURING)$ ]] || break
      sleep 1
    done
    [[ -n "${victim}" ]] || { cat "${work}"/*"-${job}.out"; fail "job ${job} did not train ($(job_state "${job}"))"; }
    kill -9 "${victim}"
    start=$(date +%s)
    state="$(wait_done "${job}" 240)"
    elapsed=$(( $(date +%s) - start ))
    out="${work}/cmaf-test-killrank-${job}.out"
    grep -v '^[IW]2' "${out}" | tail -15 || true
    echo "job ${job}: ${state} $(job_field "${job}" ExitCode), ${elapsed} s after task 1 (pid ${victim}) was killed"
    [[ "${state}" == FAILED ]] || fail "job ${job} with a killed task: ${state}, expected FAILED"
    ((elapsed < 60)) || fail "the job took ${elapsed} s to end after a task was killed (the stall limit is 300 s)"
    if task_pid "${job}" 0 > /dev/null; then fail "task 0 of job ${job} still runs"; fi
    if ((kbe)); then
      ((elapsed < 20)) || fail "with --kill-on-bad-exit=1 the job took ${elapsed} s to end (KillWait is 30 s)"
      grep -qE "SIGTERM was received \(the job is ending\) while a rank is silent" "${out}" \
        || fail "no stall report cut short by SIGTERM in ${out}"
      grep -qE "rank 1 on [^:]+: no heartbeat for [0-9.]+ s" "${out}" || fail "the report does not name rank 1 silent"
    fi
    echo "${mode}: the 2-task training job failed ${elapsed} s after task 1 was killed"
    ;;
  localrundir)
    need_two_nodes
    local_run="$(awk -F= '$1 == "TmpFS" { print $2 }' "${SLURM_CONF}")/run-$(basename "${work}")"
    job="$(sbatch --parsable --job-name=cmaf-test-localrundir --chdir="${work}" --nodes=2 --ntasks-per-node=1 \
      --cpus-per-task=1 --time=10 \
      --export="ALL,CMAF_BIN=${bin},CMAF_DATA=${work}/ds,CMAF_RUN_DIR=${local_run},CMAF_TRAIN_ARGS=--preset tiny --input-size 64 --steps 6 --checkpoint-every 3" \
      "${here}/slurm/train_cpu.sbatch")"
    start=$(date +%s)
    state="$(wait_done "${job}" 180)"
    elapsed=$(( $(date +%s) - start ))
    out="${work}/cmaf-test-localrundir-${job}.out"
    grep -v '^[IW]2' "${out}" || true
    echo "job ${job}: ${state} $(job_field "${job}" ExitCode) after ${elapsed} s"
    [[ "${state}" == FAILED ]] || fail "job ${job} with a node-local run folder: ${state}, expected FAILED"
    grep -qF "error: [rank 1] ${local_run}: --run-dir: not the folder rank 0 writes to, as seen from cmaf-node2" \
      "${out}" || fail "rank 1 did not say the run folder is not rank 0's"
    grep -qF "error: [rank 0] ${local_run}: --run-dir: rank(s) 1 do not see this folder" "${out}" \
      || fail "rank 0 did not name rank 1"
    if grep -q "internal error" "${out}"; then fail "an internal error"; fi
    if grep -qE "^step [0-9]+/" "${out}"; then fail "the ranks trained"; fi
    rm -rf "${slurm_dir}"/node-tmp-*/"$(basename "${local_run}")"  # what rank 0 made on its node
    echo "localrundir: the 2-node job with a node-local run folder failed before training, in ${elapsed} s"
    ;;
  nopmix)
    # srun without an MPI plugin: each task would be a world of one. Both must refuse to start.
    start=$(date +%s)
    status=0
    timeout 120 srun --mpi=none --ntasks=2 --time=2 --job-name=cmaf-test-nopmix --chdir="${work}" \
      "${bin}" train --data "${work}/ds" --run-dir "${work}/run" --preset tiny --input-size 64 --steps 2 \
      --threads 1 > "${work}/nopmix.out" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    grep -v '^I2' "${work}/nopmix.out" || true
    ((status != 124)) || fail "srun --mpi=none hung until the 120 s timeout"
    ((status != 0)) || fail "srun --mpi=none: the tasks trained as separate worlds of one"
    [[ "$(grep -c "of 2 (SLURM_PROCID, SLURM_STEP_NUM_TASKS) without an MPI plugin.*srun --mpi=pmix" \
          "${work}/nopmix.out")" == 2 ]] || fail "expected the error of both tasks, naming srun --mpi=pmix"
    [[ ! -e "${work}/run/checkpoints" ]] || fail "a task trained alone and wrote checkpoints"
    echo "nopmix: both tasks of srun --mpi=none refused to start (status ${status}, ${elapsed} s), naming --mpi=pmix"
    ;;
  freeze)
    need_two_nodes
    probe="$4"
    continue_stopped() {  # the frozen node's processes (ours only: the probe and stopped stepds)
      ps -eo pid=,stat=,args= | awk -v probe="${probe}" '$2 ~ /^T/ && (index($0, probe) || $3 ~ /slurmstepd/) {print $1}' \
        | xargs -r kill -CONT 2>/dev/null || true
    }
    trap 'continue_stopped; scancel --quiet --name=cmaf-test-freeze 2>/dev/null || true; rm -rf "${work}"' EXIT
    start=$(date +%s)
    status=0
    timeout 150 srun --mpi=pmix --job-name=cmaf-test-freeze --nodes=2 --ntasks-per-node=2 --cpus-per-task=1 \
      --time=5 "${probe}" freeze 2 0 > "${work}/freeze.out" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    grep -v '^I2' "${work}/freeze.out" | tail -20 || true
    echo "srun exit status ${status} after ${elapsed} s"
    ((status != 124)) || fail "srun hung until the 150 s timeout"
    ((status == 75)) || fail "srun exit status ${status}, expected the stall status 75"
    ((elapsed < 90)) || fail "took ${elapsed} s (stall limit 3 s, KillWait 30 s)"
    grep -q "\[rank [01] on cmaf-node1\] stall: " "${work}/freeze.out" || fail "no stall report from cmaf-node1"
    for r in 2 3; do
      grep -q "rank ${r} on cmaf-node2: no heartbeat for" "${work}/freeze.out" \
        || fail "the report does not name frozen rank ${r} on cmaf-node2"
    done
    continue_stopped
    # The next tests need both nodes back.
    for ((i = 0; i < 120; i++)); do
      [[ -z "$(squeue -h -n cmaf-test-freeze)" && -z "$(sinfo -h -t comp,drain,down -o %N)" ]] && break
      sleep 0.5
    done
    [[ -z "$(squeue -h -n cmaf-test-freeze)" ]] || fail "the frozen job is still listed after its processes went on"
    echo "freeze: the hung node's ranks 2 and 3 reported from cmaf-node1, srun exit 75 after ${elapsed} s"
    ;;
  gpu)
    [[ -f "${slurm_dir}/gres.conf" ]] || { echo "skipped: no stand-in GPUs (device nodes cannot be made here)"; exit 77; }
    gpu_nodes=$(($(nodes_up) >= 2 ? 2 : 1))
    job="$(sbatch --parsable --job-name=cmaf-test-gpu --chdir="${work}" --partition=debug --nodes="${gpu_nodes}" --ntasks-per-node=2 \
      --gpus-per-node=2 --cpus-per-task=1 --time=5 \
      --export="ALL,CMAF_BIN=${bin},CMAF_DATA=${work}/ds,CMAF_RUN_DIR=${work}/run,CMAF_TRAIN_ARGS=--preset tiny --steps 4" \
      "${here}/slurm/train_gpu.sbatch")"
    state="$(wait_done "${job}" 120)"
    out="${work}/cmaf-test-gpu-${job}.out"
    grep -v '^I2' "${out}" || true
    [[ "$(job_field "${job}" TresPerNode)" == *gpu:2* ]] || fail "the job did not ask for 2 GPUs per node"
    [[ "${state}" == FAILED ]] || fail "GPU job ${job} without a GPU: ${state}, expected FAILED"
    # 2 nodes x 2 ranks: each rank's device comes from its node-local rank (0 or 1 on both
    # nodes), not from its global rank (2 and 3 would be past the node's 2 GPUs).
    for ((r = 0; r < 2 * gpu_nodes; r++)); do
      host="cmaf-node$((r / 2 + 1))"
      ((gpu_nodes == 2)) || host="[^ ]*"
      grep -q "\[rank ${r}\] --device: cuda: no CUDA device usable by rank ${r} (node-local rank $((r % 2)) of 2, [^)]*) on ${host} (CUDA_VISIBLE_DEVICES=0,1" "${out}" ||
        fail "rank ${r} did not report the missing CUDA device as local rank $((r % 2)) on ${host} with Slurm's CUDA_VISIBLE_DEVICES"
    done
    [[ ! -d "${work}/run/checkpoints/step-00000004" ]] || fail "a checkpoint was written"
    echo "gpu: scheduled on ${gpu_nodes} node(s) x 2 stand-in GPUs, $((2 * gpu_nodes)) ranks, each stopped naming itself, its node-local rank and CUDA_VISIBLE_DEVICES=0,1"
    ;;
  preempt | preempt2nodes)
    if [[ "${mode}" == preempt2nodes ]]; then
      need_two_nodes
      SBATCH_EXTRA="--nodes=2 --ntasks-per-node=2"
    fi
    job="$(submit train_preemptible.sbatch "cmaf-test-${mode}" CMAF_DATA="${work}/ds" CMAF_RUN_DIR="${work}/run" \
      CMAF_TRAIN_ARGS="--preset tiny --input-size 64 --steps 40 --checkpoint-every 1000 --log-every 1")"
    out="${work}/cmaf-test-${mode}-${job}.out"
    for ((i = 0; i < 240; i++)); do grep -qsE '"step":3[,}]' "${work}/run/metrics.jsonl" && break; sleep 0.5; done
    grep -qsE '"step":3[,}]' "${work}/run/metrics.jsonl" || { cat "${out}"; fail "training did not reach step 3"; }
    scancel --signal=USR1 --batch "${job}"
    # The requeued job starts once its old credential expired (cred_expire=10 in local-slurm.sh).
    state="$(wait_done "${job}" 300)"
    grep -v '^[IW]2\|^step' "${out}" || true
    [[ "${state}" == COMPLETED ]] || fail "preemptible job ${job}: ${state}"
    [[ "$(job_field "${job}" Restarts)" == 1 ]] || fail "the job was not requeued once"
    resumed="$(grep -o 'finished at step 40 (resumed from step [0-9]*)' "${out}" | grep -o '[0-9]*)$' | tr -d ')')"
    [[ -n "${resumed}" ]] || fail "the requeued run did not resume from a checkpoint"
    ((resumed >= 3 && resumed < 40)) || fail "resumed from step ${resumed}"
    [[ -d "${work}/run/checkpoints/step-$(printf %08d "${resumed}")" ]] || fail "no checkpoint of step ${resumed}"
    if [[ "${mode}" == preempt2nodes ]]; then
      [[ "$(job_field "${job}" NumNodes)" == 2 ]] || fail "the job ran on $(job_field "${job}" NumNodes) node(s)"
      [[ -f "${work}/run/checkpoints/step-$(printf %08d "${resumed}")/rank-00003.pt" ]] \
        || fail "rank 3 (on the second node) wrote no part of the step-${resumed} checkpoint"
    fi
    echo "${mode}: signalled, checkpointed at step ${resumed}, requeued, resumed, finished at step 40"
    ;;
  stallrequeue)
    train_args="--preset tiny --input-size 64 --steps 100000 --checkpoint-every 2 --log-every 1 --stall-seconds 6"
    job="$(submit train_preemptible.sbatch cmaf-test-stallrequeue CMAF_DATA="${work}/ds" CMAF_RUN_DIR="${work}/run" \
      CMAF_STALL_REQUEUES=1 CMAF_TRAIN_ARGS="${train_args}")"
    out="${work}/cmaf-test-stallrequeue-${job}.out"
    stopped=()
    trap 'kill -CONT "${stopped[@]}" 2>/dev/null || true
          scancel --quiet --name=cmaf-test-stallrequeue 2>/dev/null || true; rm -rf "${work}"' EXIT
    # stop_task_1 RUN: once run RUN (0, then 1 after the requeue) printed a step line after a
    # checkpoint, SIGSTOP task 1 (hung, not dead: only the others' stall limit can end the job).
    stop_task_1() {
      local victim="" i
      for ((i = 0; i < 240; i++)); do
        # A step line from step 3 on, printed after this run's start line (awk reads it all:
        # no pipe that SIGPIPE could fail under pipefail).
        if [[ "$(job_field "${job}" Restarts)" == "$1" ]] &&
           awk -v start="start (restart count $1)" 'index($0, start) {run = 1}
             run && /^step ([3-9]|[0-9][0-9]+)\// {found = 1} END {exit !found}' "${out}" 2> /dev/null &&
           [[ -d "${work}/run/checkpoints" ]] && victim="$(task_pid "${job}" 1)" &&
           [[ "$(ps -o stat= -p "${victim}")" != T* ]]; then  # not the previous run's, stopped
          break
        fi
        victim=""
        ended='^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|DEADLINE|BOOT_FAIL)$'
        [[ "$(job_state "${job}")" =~ ${ended} ]] && break  # not requeued
        sleep 0.5
      done
      [[ -n "${victim}" ]] || { cat "${out}"; fail "run $1 of job ${job} did not train ($(job_state "${job}"))"; }
      kill -STOP "${victim}" || fail "could not stop task 1 (pid ${victim}) of run $1"
      stopped+=("${victim}")
    }
    stop_task_1 0
    stop_task_1 1
    state="$(wait_done "${job}" 240)"
    kill -CONT "${stopped[@]}" 2> /dev/null || true
    grep -v '^[IW]2\|^step' "${out}" || true
    echo "job ${job}: ${state} $(job_field "${job}" ExitCode), restarts $(job_field "${job}" Restarts)"
    [[ "${state}" == FAILED && "$(job_field "${job}" ExitCode)" == 75:0 ]] \
      || fail "job ${job}: ${state} $(job_field "${job}" ExitCode), expected FAILED 75:0 after the second stall"
    [[ "$(job_field "${job}" Restarts)" == 1 ]] || fail "the job was not requeued exactly once"
    [[ "$(grep -c . "${work}/run/stall-requeues.log")" == 1 ]] || fail "expected one line in stall-requeues.log"
    grep -q "stall (status 75): requeueing job ${job}, stall requeue 1 of 1" "${out}" || fail "no requeue line"
    grep -q "stall (status 75): not requeueing, 1 stall requeue(s)" "${out}" || fail "no refusal line"
    [[ "$(grep -c "\] stall: collective #" "${out}")" -ge 2 ]] || fail "expected rank 0's stall report in each run"
    grep -qE "identical parameters and multipliers at resume \(step [1-9][0-9]*\)" "${out}" \
      || fail "the requeued run did not resume from a checkpoint"
    echo "stallrequeue: a hung rank's stall was requeued once and resumed; the second stall was not requeued"
    ;;
  preparray)
    "$4" "${work}/raw" 7 3
    prep_args="--test-cases 2 --labeled-cases 2 --seed 3"
    "${bin}" prep --input "${work}/raw" --out "${work}/one-run" ${prep_args} > /dev/null 2>&1 || fail "single prep"
    array="$(sbatch --parsable --job-name=cmaf-test-preparray --array=0-2 --chdir="${work}" \
      --export="ALL,CMAF_BIN=${bin},CMAF_INPUT=${work}/raw,CMAF_OUT=${work}/prepared,CMAF_PREP_ARGS=${prep_args}" \
      "${here}/slurm/prep_array.sbatch")"
    merge="$(sbatch --parsable --job-name=cmaf-test-preparray --dependency="afterok:${array}" --chdir="${work}" \
      --export="ALL,CMAF_BIN=${bin},CMAF_OUT=${work}/prepared" "${here}/slurm/prep_merge.sbatch")"
    state="$(wait_done "${merge}" 240)"
    [[ "${state}" == COMPLETED ]] || { cat "${work}"/*.out; fail "merge job ${merge}: ${state}"; }
    for t in 0 1 2; do
      [[ "$(job_state "${array}_${t}")" == COMPLETED ]] || fail "array task ${t}: $(job_state "${array}_${t}")"
    done
    [[ ! -d "${work}/prepared.parts" ]] || fail "the parts were not removed after the merge"
    # One line per case, "id labeled split", from the manifest (no JSON tool needed).
    summary() {
      tr -d ' \n' < "$1/manifest.json" | grep -o '{"class_slices[^}]*}' \
        | sed -E 's/.*"id":"([^"]*)".*"labeled":([a-z]*).*"split":"([a-z]*)".*/\1 \2 \3/' | sort
    }
    [[ "$(summary "${work}/prepared" | wc -l)" == 7 ]] || fail "the merged dataset does not list 7 cases"
    diff <(summary "${work}/one-run") <(summary "${work}/prepared") || fail "the merged dataset differs from one prep run"
    echo "preparray: 3 array tasks + merge = one prep run (7 cases)"
    ;;
  *) fail "unknown mode ${mode}" ;;
esac
