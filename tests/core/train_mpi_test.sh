#!/usr/bin/env bash
# Multi-rank training under a real mpirun (2 ranks, or TRAIN_MPI_RANKS), on a small synthetic
# dataset. With TRAIN_MPI_EXPECT_LOG, the first run's log must contain that text (say, the
# line that names the path the gradient sums take); several texts are separated by '|'.
#
#   train_mpi_test.sh MPIEXEC CMAFORMER MODE [CHECKPOINT_COMPARE]
#     resume  2k steps uninterrupted == k steps, checkpoint, resume, k more (weights, optimizer,
#             teacher, multipliers bit-identical; multipliers fingerprint-checked across ranks)
#     usr1    SIGUSR1 to one rank: every rank checkpoints at the same step, exit status 85;
#             --resume auto continues from that step
#     kill9   SIGKILL to one rank: the job ends non-zero within a bounded time; --resume auto
#             continues from the last published checkpoint
#     killsave  SIGKILL to a rank while a checkpoint is half written (a test-only delay between
#             its files): the previous checkpoint is intact and --resume auto uses it
#     usr1twice SIGUSR1, then another while the checkpoint is being written: one valid
#             checkpoint, exit 85, resume from it
#     bf16wire  --bf16-allreduce with 1 MiB buckets: the replicas stay identical (fingerprints
#             every 2 steps), the option is recorded and in effect (losses differ from fp32's,
#             by little)
#     nosyncbn  --sync-batch-norm 0: each rank's batch-norm statistics come from its own slices,
#             and rank 0's are broadcast every step, so the replica checks (every 2 steps,
#             parameters and batch-norm buffers) pass and the checkpoint is every rank's state
#     rankerror  an error on rank 0 alone (--resume names no checkpoint) ends the job within
#             seconds with its message and status 1; an error on every rank ends it cleanly
#     busywork  rank 0 writes the checkpoint (a 9 s test pause) and validates 2 slices to rank 1's
#             one (8 s a slice): rank 1 waits for it past the 5 s stall limit, warned as busy work
#             (not a stall), and the job finishes
#     straggler  rank 1 is stopped two thirds of the time by its wrapper (SIGSTOP / SIGCONT):
#             the step lines name rank 1 as the slowest and rank 0 warns about it
set -euo pipefail
mpiexec="$1"
bin="$2"
mode="$3"
compare="${4:-}"
work="$(mktemp -d)"
mpi_pid=""
cleanup() {
  if [[ -n "${mpi_pid}" ]] && kill -0 "${mpi_pid}" 2>/dev/null; then kill -9 "${mpi_pid}" 2>/dev/null || true; fi
  rm -rf "${work}"
}
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }

"${bin}" synth --out "${work}/ds" --cases 10 --size 64 --slices 12 --classes 4 --labeled-cases 4 \
  --val-cases 2 --test-cases 0 --seed 3 > /dev/null 2>&1

command_line() {  # command_line RUN_DIR STEPS CHECKPOINT_EVERY [extra options...] -> ${cmd[@]}
  local run="$1" steps="$2" every="$3"
  shift 3
  cmd=("${mpiexec}" -np "${TRAIN_MPI_RANKS:-2}" --oversubscribe --bind-to none "${bin}" train --data "${work}/ds" --run-dir "${run}"
       --preset tiny --input-size 64 --steps "${steps}" --checkpoint-every "${every}" --labeled-batch 2
       --unlabeled-batch 2 --threads 1 --lr 3e-3 --log-every 1 --fingerprint-every 2 --ramp-up-steps 4
       --confidence-threshold 0 "$@")
  # --confidence-threshold 0: every teacher pixel is a target, so the LDC constraints are active
  # from the first step and the multipliers move; with the default threshold an untrained
  # teacher gives no confident organ pixel in 12 steps, the multipliers stay 0 and their
  # bit-identity checks across ranks (--fingerprint-every 2) could not fail.
}
train() { command_line "$@"; "${cmd[@]}"; }
start_in_background() {  # start_in_background OUT RUN_DIR STEPS CHECKPOINT_EVERY [...]: sets mpi_pid
  local out="$1"
  shift
  command_line "$@"
  "${cmd[@]}" < /dev/null > "${out}" 2>&1 &
  mpi_pid=$!
}
rank_pid() {  # a rank process of the job (a child of mpirun that runs cmaformer)
  pgrep -P "${mpi_pid}" -f "cmaformer train" | tail -1
}

without_timing() { sed -e 's/"images_per_s":[^,}]*//' -e 's/,"pace":{[^}]*}//' "$1"; }

latest() { ls -d "$1"/checkpoints/step-* 2>/dev/null | sort | tail -1; }

wait_for() {  # wait_for SECONDS CONDITION...
  local limit="$1"
  shift
  for ((i = 0; i < limit * 10; i++)); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  return 1
}

case "${mode}" in
  resume)
    train "${work}/a" 12 12 > "${work}/a.out" 2>&1 || { cat "${work}/a.out"; fail "uninterrupted run"; }
    if [[ -n "${TRAIN_MPI_EXPECT_LOG:-}" ]]; then
      IFS='|' read -ra expected <<<"${TRAIN_MPI_EXPECT_LOG}"
      for text in "${expected[@]}"; do
        grep -qF "${text}" "${work}/a.out" || { cat "${work}/a.out"; fail "no '${text}' in the log"; }
      done
    fi
    train "${work}/b" 12 6 > "${work}/b.out" 2>&1 || { cat "${work}/b.out"; fail "checkpointed run"; }
    mkdir -p "${work}/c/checkpoints"
    cp -r "${work}/b/checkpoints/step-00000006" "${work}/c/checkpoints/"
    train "${work}/c" 12 12 > "${work}/c.out" 2>&1 || { cat "${work}/c.out"; fail "resumed run"; }
    grep -q "resumed from step 6" "${work}/c.out" || fail "run c did not resume from step 6"
    grep -q "ranks hold identical parameters and multipliers at start" "${work}/a.out" \
      || { cat "${work}/a.out"; fail "run a did not check the replicas at the start"; }
    grep -q "ranks hold identical parameters and multipliers at resume (step 6)" "${work}/c.out" \
      || { cat "${work}/c.out"; fail "run c did not check the replicas after resuming"; }
    "${compare}" "${work}/a/checkpoints/step-00000012" "${work}/c/checkpoints/step-00000012" \
      || fail "the resumed run's step-12 state differs from the uninterrupted run's"
    diff <(without_timing "${work}/a/metrics.jsonl" | grep -E '"step":12[,}]') \
         <(without_timing "${work}/c/metrics.jsonl" | grep -E '"step":12[,}]') || fail "step-12 metrics differ"
    grep -E '"step":12[,}]' "${work}/a/metrics.jsonl" | grep -q '"multipliers":\[[0-9.e-]*,' || fail "no multipliers logged"
    grep -E '"step":12[,}]' "${work}/a/metrics.jsonl" | grep -qE '"multipliers":\[[^]]*[1-9]' \
      || fail "the multipliers are all 0 at step 12: the checks that they agree across ranks tested nothing"
    echo "resume: step-12 checkpoints of the uninterrupted and the resumed ${TRAIN_MPI_RANKS:-2}-rank runs are identical"
    ;;
  busywork)
    # A 5 s limit: elsewhere the ranks of a loaded 2-core machine may drift a few seconds apart.
    CMAF_CHECKPOINT_SAVE_DELAY_MS=9000 CMAF_VALIDATION_SLICE_DELAY_MS=8000 train "${work}/w" 2 2 --stall-seconds 5 \
      --val-every 2 --val-max-slices 3 > "${work}/w.out" 2>&1 || { cat "${work}/w.out"; fail "training with busy ranks"; }
    grep -q "finished at step 2" "${work}/w.out" || { cat "${work}/w.out"; fail "did not finish at step 2"; }
    # Rank 1's log (only rank 0's goes to stderr): one warning per collective it waited in.
    waits="$(cat "${work}"/w/logs/rank-1.log.* | grep "past the stall limit of 5 s, for ranks busy")"
    echo "${waits}"
    [[ "$(grep -c . <<<"${waits}")" -ge 2 ]] || fail "expected rank 1 to wait for busy work twice (validation, the checkpoint)"
    echo "busywork: rank 1 waited for rank 0's validation and checkpoint past the stall limit; the job finished"
    ;;
  usr1)
    start_in_background "${work}/r.out" "${work}/r" 2000 1000
    wait_for 120 grep -qsE '"step":3[,}]' "${work}/r/metrics.jsonl" || { cat "${work}/r.out"; fail "training did not reach step 3"; }
    rank_pid="$(rank_pid)"
    [[ -n "${rank_pid}" ]] || fail "no rank process under mpirun ${mpi_pid}"
    kill -USR1 "${rank_pid}"
    rc=0
    wait "${mpi_pid}" || rc=$?
    mpi_pid=""
    [[ "${rc}" == 85 ]] || { cat "${work}/r.out"; fail "exit status ${rc}, expected 85 (requeue)"; }
    ckpt="$(latest "${work}/r")"
    [[ -n "${ckpt}" && -f "${ckpt}/MANIFEST.json" ]] || fail "no checkpoint after the signal"
    [[ -f "${ckpt}/rank-00000.pt" && -f "${ckpt}/rank-00001.pt" ]] || fail "a rank's part is missing in ${ckpt}"
    step=$((10#${ckpt##*step-}))
    ((step >= 3 && step < 2000)) || fail "checkpoint step ${step}"
    train "${work}/r" $((step + 3)) 1000 > "${work}/r2.out" 2>&1 || { cat "${work}/r2.out"; fail "requeued run"; }
    grep -q "finished at step $((step + 3)) (resumed from step ${step})" "${work}/r2.out" \
      || { cat "${work}/r2.out"; fail "the requeued run did not continue from step ${step}"; }
    echo "usr1: both ranks checkpointed at step ${step}, exit 85, resumed from ${step}"
    ;;
  kill9)
    start_in_background "${work}/k.out" "${work}/k" 2000 3 --stall-seconds 20
    wait_for 120 test -f "${work}/k/checkpoints/step-00000006/MANIFEST.json" || { cat "${work}/k.out"; fail "no checkpoint at step 6"; }
    rank_pid="$(rank_pid)"
    [[ -n "${rank_pid}" ]] || fail "no rank process under mpirun ${mpi_pid}"
    start=$SECONDS
    kill -9 "${rank_pid}"
    rc=0
    wait "${mpi_pid}" || rc=$?
    mpi_pid=""
    elapsed=$((SECONDS - start))
    [[ "${rc}" != 0 ]] || fail "the job exited 0 after a rank was killed"
    ((elapsed <= 60)) || fail "the job took ${elapsed} s to end after the kill"
    ckpt="$(latest "${work}/k")"
    step=$((10#${ckpt##*step-}))
    train "${work}/k" $((step + 2)) 1000 > "${work}/k2.out" 2>&1 || { cat "${work}/k2.out"; fail "resumed run"; }
    grep -q "resumed from step ${step}" "${work}/k2.out" || { cat "${work}/k2.out"; fail "did not resume from ${step}"; }
    echo "kill9: job ended (status ${rc}) ${elapsed} s after the kill; resumed from step ${step}"
    ;;
  killsave)
    CMAF_CHECKPOINT_SAVE_DELAY_MS=4000 start_in_background "${work}/s.out" "${work}/s" 2000 4
    wait_for 120 test -f "${work}/s/checkpoints/step-00000004/MANIFEST.json" || { cat "${work}/s.out"; fail "no step-4 checkpoint"; }
    wait_for 60 test -f "${work}/s/checkpoints/.staging-step-00000008/model.pt" || fail "the step-8 save did not start"
    kill -9 "$(rank_pid)"
    wait "${mpi_pid}" || true
    mpi_pid=""
    [[ ! -d "${work}/s/checkpoints/step-00000008" ]] || fail "a half-written checkpoint was published"
    train "${work}/s" 6 1000 > "${work}/s2.out" 2>&1 || { cat "${work}/s2.out"; fail "resume after the killed save"; }
    grep -q "finished at step 6 (resumed from step 4)" "${work}/s2.out" || { cat "${work}/s2.out"; fail "did not resume from step 4"; }
    echo "killsave: the save killed half-way left step 4 intact; resumed from it"
    ;;
  usr1twice)
    CMAF_CHECKPOINT_SAVE_DELAY_MS=3000 start_in_background "${work}/t.out" "${work}/t" 2000 1000
    wait_for 120 grep -qsE '"step":3[,}]' "${work}/t/metrics.jsonl" || { cat "${work}/t.out"; fail "training did not reach step 3"; }
    victim="$(rank_pid)"
    kill -USR1 "${victim}"
    wait_for 60 compgen -G "${work}/t/checkpoints/.staging-step-*/model.pt" > /dev/null || fail "the save did not start"
    kill -USR1 "${victim}"  # during the save
    rc=0
    wait "${mpi_pid}" || rc=$?
    mpi_pid=""
    [[ "${rc}" == 85 ]] || { cat "${work}/t.out"; fail "exit status ${rc}, expected 85"; }
    # One checkpoint (every 1000 steps: only the first signal's), published whole.
    published=("${work}/t/checkpoints"/step-*)
    ((${#published[@]} == 1)) && [[ -d "${published[0]}" ]] \
      || fail "the two signals left ${#published[@]} checkpoints: ${published[*]}"
    ! compgen -G "${work}/t/checkpoints/.staging-*" > /dev/null || fail "a staging folder was left behind"
    ckpt="$(latest "${work}/t")"
    step=$((10#${ckpt##*step-}))
    train "${work}/t" $((step + 2)) 1000 > "${work}/t2.out" 2>&1 || { cat "${work}/t2.out"; fail "resume"; }
    grep -q "resumed from step ${step}" "${work}/t2.out" || { cat "${work}/t2.out"; fail "did not resume from ${step}"; }
    echo "usr1twice: a second signal during the save changed nothing; resumed from step ${step}"
    ;;
  bf16wire)
    train "${work}/f" 6 6 > "${work}/f.out" 2>&1 || { cat "${work}/f.out"; fail "fp32 run"; }
    train "${work}/w" 6 6 --bf16-allreduce 1 --bucket-cap-mib 1 --first-bucket-mib 0.25 > "${work}/w.out" 2>&1 \
      || { cat "${work}/w.out"; fail "bf16-allreduce run (a replica check fails it if the ranks drift)"; }
    grep -q '"bf16-allreduce": *true' "${work}/w/config.json" || fail "config.json does not record bf16-allreduce"
    grep -q '"bucket-cap-mib": *1[,}]' "${work}/w/config.json" || fail "config.json does not record bucket-cap-mib 1"
    grep -q '"first-bucket-mib": *0.25[,}]' "${work}/w/config.json" || fail "config.json does not record first-bucket-mib 0.25"
    total() { grep -E '"step":6[,}]' "$1/metrics.jsonl" | grep -o '"total":[-0-9.e+]*' | head -1 | cut -d: -f2; }
    fp32="$(total "${work}/f")"
    bf16="$(total "${work}/w")"
    [[ -n "${fp32}" && -n "${bf16}" ]] || fail "no step-6 total loss (fp32 '${fp32}', bf16 '${bf16}')"
    [[ "${fp32}" != "${bf16}" ]] || fail "bf16 gradients changed nothing: step-6 loss ${fp32} both ways"
    awk -v a="${fp32}" -v b="${bf16}" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.1 * a) }' \
      || fail "step-6 loss ${bf16} with bf16 gradients, ${fp32} with fp32: more than 10 % apart"
    echo "bf16wire: replicas identical; step-6 loss ${bf16} with bf16 gradients, ${fp32} with fp32"
    ;;
  nosyncbn)
    train "${work}/n" 6 6 --sync-batch-norm 0 > "${work}/n.out" 2>&1 \
      || { cat "${work}/n.out"; fail "--sync-batch-norm 0 run (a replica check fails it if the statistics drift)"; }
    grep -q '"sync-batch-norm": *false' "${work}/n/config.json" || fail "config.json does not record sync-batch-norm false"
    grep -q "parameters and batch-norm statistics" "${work}/n.out" && fail "a replica check reported a difference"
    echo "nosyncbn: 6 steps, parameters and batch-norm statistics identical on every rank at every check"
    ;;
  rankerror)
    # An error on one rank only: rank 0 alone reads the checkpoint --resume names, while rank 1
    # waits for its choice in a collective. The job must end with rank 0's message and status 1
    # within seconds, not at the stall limit (default 300 s) with a stall report.
    start=$SECONDS
    rc=0
    timeout 120 "${mpiexec}" -np 2 --oversubscribe --bind-to none "${bin}" train --data "${work}/ds" \
      --run-dir "${work}/e" --preset tiny --input-size 64 --steps 4 --threads 1 \
      --resume "${work}/no-such-checkpoint" > "${work}/e.out" 2>&1 || rc=$?
    elapsed=$((SECONDS - start))
    cat "${work}/e.out"
    [[ "${rc}" != 124 ]] || fail "the job hung (killed by timeout after 120 s)"
    [[ "${rc}" == 1 ]] || fail "exit status ${rc}, expected 1 (the error's)"
    ((elapsed <= 60)) || fail "the job took ${elapsed} s to end"
    grep -q "error: \[rank 0\] ${work}/no-such-checkpoint: .*not a valid checkpoint" "${work}/e.out" \
      || fail "rank 0's error message is missing"
    grep -qE "stall:|stall limit" "${work}/e.out" && fail "the error was reported as a stall"
    # An error on every rank at once (every rank opens the dataset) still shuts down cleanly:
    # each rank prints it and no rank has to end the job.
    rm -f "${work}/ds/manifest.json"
    rc=0
    timeout 120 "${mpiexec}" -np 2 --oversubscribe --bind-to none "${bin}" train --data "${work}/ds" \
      --run-dir "${work}/f" --preset tiny --input-size 64 --steps 4 --threads 1 > "${work}/f.out" 2>&1 || rc=$?
    cat "${work}/f.out"
    [[ "${rc}" == 1 ]] || fail "exit status ${rc} when every rank fails, expected 1"
    [[ "$(grep -c '^error: \[rank [01]\] .*manifest.json' "${work}/f.out")" == 2 ]] \
      || fail "expected the error of both ranks"
    grep -q "has failed" "${work}/f.out" && fail "a rank ended the job although every rank failed the same way"
    echo "rankerror: one rank's error ended the job in ${elapsed} s with its message and status 1"
    ;;
  straggler)
    # Rank 1 is stopped for 100 ms of every 150 ms (SIGSTOP / SIGCONT from its wrapper), as a
    # throttled node would run it. (A busy loop sharing its CPU was not enough: the scheduler
    # favours a rank that sleeps in its collectives over the loop, and under ctest -j2 another
    # test's threads slowed rank 0 as much; either hid the gap in some runs.)
    cat > "${work}/slow_rank.sh" <<'WRAPPER'
#!/usr/bin/env bash
"$@" &
child=$!
while kill -0 "${child}" 2>/dev/null; do
  sleep 0.05; kill -STOP "${child}" 2>/dev/null; sleep 0.1; kill -CONT "${child}" 2>/dev/null
done &
loop=$!
wait "${child}"
status=$?
kill "${loop}" 2>/dev/null
exit ${status}
WRAPPER
    chmod +x "${work}/slow_rank.sh"
    args=(train --data "${work}/ds" --run-dir "${work}/s" --preset tiny --input-size 64 --steps 16
          --checkpoint-every 16 --labeled-batch 2 --unlabeled-batch 2 --threads 1 --log-every 8)
    timeout 240 "${mpiexec}" --oversubscribe --bind-to none -np 1 "${bin}" "${args[@]}" : \
      -np 1 "${work}/slow_rank.sh" "${bin}" "${args[@]}" > "${work}/s.out" 2>&1 \
      || { cat "${work}/s.out"; fail "the run with a slowed rank 1"; }
    last="$(grep '"step":16[,}]' "${work}/s/metrics.jsonl" | grep '"pace"' | tail -1)"
    [[ -n "${last}" ]] || fail "no pace in the step-16 line: $(tail -1 "${work}/s/metrics.jsonl")"
    grep -q '"slowest_rank":1[,}]' <<< "${last}" || fail "rank 1 not named the slowest: ${last}"
    excess="$(grep -o '"slowest_excess":[-0-9.e+]*' <<< "${last}" | cut -d: -f2)"
    awk -v e="${excess}" 'BEGIN { exit !(e > 0.3) }' || fail "rank 1 only ${excess} slower than rank 0: ${last}"
    grep -q "rank 1 on .* was busy .* more than the other ranks' median" "${work}/s.out" \
      || { cat "${work}/s.out"; fail "no straggler warning"; }
    echo "straggler: rank 1 named, busy $(awk -v e="${excess}" 'BEGIN { printf "%.0f", 100 * e }') % longer than rank 0"
    ;;
  *) fail "unknown mode ${mode}" ;;
esac
# A binary that carries the MPI audit (cmaformer_mpi_audited) prints "MPI audit:" for each MPI
# function called off the MPI thread where calls are funnelled.
if grep -h "MPI audit:" "${work}"/*.out 2>/dev/null; then fail "an MPI call off the MPI thread"; fi
