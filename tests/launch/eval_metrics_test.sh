#!/usr/bin/env bash
# `cmaformer eval` and `cmaformer metrics` as users run them, on a small synthetic dataset:
#   - a short training run gives a checkpoint;
#   - eval alone and eval under a 2-rank mpirun score the same cases with the same numbers, also
#     with --recalibrate-bn (whose sums the ranks add), and with a rank busy past the stall limit;
#   - --largest-component is recorded and only removes predicted voxels;
#   - metrics on eval's saved NIfTI predictions against the dataset reproduces eval's table;
#   - a missing prediction is an error (exit 1) naming the case;
#   - plot renders the run's figures as PNG files, and only those a run has data for (a
#     supervised-only run has no multipliers, pool or teacher figure); the run uses the pool's
#     organ gate, so the pool figure draws each organ's share ratio (3 columns per organ).
set -euo pipefail
mpiexec="$1"
bin="$2"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }

"${bin}" synth --out "${work}/ds" --cases 8 --size 64 --slices 10 --classes 3 --labeled-cases 3 \
  --test-cases 3 --val-cases 1 --seed 4 > /dev/null 2>&1
"${bin}" train --data "${work}/ds" --run-dir "${work}/run" --preset tiny --input-size 64 --steps 6 \
  --checkpoint-every 6 --pool-refresh-every 3 --pool-prior-ratio 3 --threads 1 > /dev/null 2>&1 || fail "training"
ckpt="${work}/run/checkpoints/step-00000006"

"${bin}" eval --checkpoint "${ckpt}" --data "${work}/ds" --out "${work}/one" --save-predictions --threads 1 \
  > "${work}/one.out" 2>&1 || { cat "${work}/one.out"; fail "eval alone"; }
"${mpiexec}" -np 2 --oversubscribe --bind-to none "${bin}" eval --checkpoint "${ckpt}" --data "${work}/ds" \
  --out "${work}/two" --threads 1 > "${work}/two.out" 2>&1 || { cat "${work}/two.out"; fail "eval on 2 ranks"; }
[[ "$(ls "${work}/one/predictions" | wc -l)" == 3 ]] || fail "expected 3 predicted volumes"
[[ "$(tail -n +2 "${work}/one/metrics.csv" | wc -l)" == 9 ]] || fail "expected 3 cases x 3 classes in metrics.csv"
cmp "${work}/one/metrics.csv" "${work}/two/metrics.csv" || fail "1-rank and 2-rank eval disagree"
cmp "${work}/one/metrics.md" "${work}/two/metrics.md" || fail "1-rank and 2-rank tables disagree"
# The rank with more to do marks its cases busy: with an 8 s test pause a case, rank 0 (2 of the 3
# equal test cases) keeps rank 1 waiting about 8 s at the gather, past a 5 s stall limit, and the
# others wait for it (up to 10 x the limit) instead of aborting the job.
CMAF_EVAL_CASE_DELAY_MS=8000 "${mpiexec}" -np 2 --oversubscribe --bind-to none "${bin}" eval --checkpoint "${ckpt}" \
  --data "${work}/ds" --out "${work}/slow" --threads 1 --stall-seconds 5 > "${work}/slow.out" 2>&1 \
  || { cat "${work}/slow.out"; fail "eval on 2 ranks, one busy past the stall limit"; }
grep -q "past the stall limit of 5 s, for ranks busy with work of their own" "${work}/slow.out" \
  || { cat "${work}/slow.out"; fail "rank 1 did not wait past the stall limit: the test tested nothing"; }
cmp "${work}/one/metrics.csv" "${work}/slow/metrics.csv" || fail "the slowed 2-rank eval scored differently"
# --recalibrate-bn: batch-norm statistics from the training slices. 2 ranks each forward their
# share and add the sums; the same 50 slices, but in other batches, whose statistics the layers
# normalise with meanwhile, so deeper layers' sums differ a little: predicted volumes agree to
# 15 %. The option changes the predictions of this 6-step model (plain: every voxel one class).
"${bin}" eval --checkpoint "${ckpt}" --data "${work}/ds" --out "${work}/rc1" --recalibrate-bn --threads 1 \
  > "${work}/rc1.out" 2>&1 || { cat "${work}/rc1.out"; fail "eval --recalibrate-bn"; }
"${mpiexec}" -np 2 --oversubscribe --bind-to none "${bin}" eval --checkpoint "${ckpt}" --data "${work}/ds" \
  --out "${work}/rc2" --recalibrate-bn --threads 1 > "${work}/rc2.out" 2>&1 || { cat "${work}/rc2.out"; fail "eval --recalibrate-bn on 2 ranks"; }
grep -Eq '"recalibrate_bn": *true' "${work}/rc1/metrics.json" || fail "metrics.json does not record --recalibrate-bn"
grep -Eq '"recalibrate_bn": *false' "${work}/one/metrics.json" || fail "metrics.json does not record its absence"
paste -d, "${work}/rc1/metrics.csv" "${work}/rc2/metrics.csv" | awk -F, 'NR > 1 {
  a = $5; b = $19; d = a > b ? a - b : b - a; m = a > b ? a : b
  if (d > 0.15 * m + 200) { print "row " NR ": " a " vs " b " voxels"; bad = 1 } } END { exit bad }' \
  || fail "1-rank and 2-rank recalibrated eval disagree"
! cmp -s "${work}/rc1/metrics.csv" "${work}/one/metrics.csv" || fail "--recalibrate-bn changed nothing"
"${bin}" eval --checkpoint "${ckpt}" --data "${work}/ds" --out "${work}/rcl" --recalibrate-bn --recalibrate-on labeled \
  --threads 1 > "${work}/rcl.out" 2>&1 || { cat "${work}/rcl.out"; fail "eval --recalibrate-on labeled"; }
grep -Eq '"recalibrate_on": *"labeled"' "${work}/rcl/metrics.json" || fail "metrics.json does not record --recalibrate-on"
rc=0
"${bin}" eval --checkpoint "${ckpt}" --data "${work}/ds" --out "${work}/rcx" --recalibrate-bn --recalibrate-on test \
  --threads 1 > "${work}/rcx.out" 2>&1 || rc=$?
[[ "${rc}" == 1 ]] && grep -q -- "--recalibrate-on" "${work}/rcx.out" || { cat "${work}/rcx.out"; fail "--recalibrate-on test: exit ${rc}, expected 1 naming the option"; }
[[ ! -e "${work}/rcx/metrics.json" ]] || fail "a refused eval wrote metrics"
# --largest-component: recorded, and it only ever removes predicted voxels.
"${bin}" eval --checkpoint "${ckpt}" --data "${work}/ds" --out "${work}/lc" --recalibrate-bn --largest-component \
  --threads 1 > "${work}/lc.out" 2>&1 || { cat "${work}/lc.out"; fail "eval --largest-component"; }
grep -Eq '"largest_component": *true' "${work}/lc/metrics.json" || fail "metrics.json does not record --largest-component"
paste -d, "${work}/rc1/metrics.csv" "${work}/lc/metrics.csv" | awk -F, 'NR > 1 && $19 > $5 { print "row " NR ": " $5 " -> " $19; bad = 1 } END { exit bad }' \
  || fail "--largest-component added predicted voxels"

"${bin}" metrics --pred "${work}/one/predictions" --truth "${work}/ds" --out "${work}/m/metrics.json" \
  > "${work}/m.out" 2>&1 || { cat "${work}/m.out"; fail "metrics"; }
cmp "${work}/one/metrics.csv" "${work}/m/metrics.csv" || fail "metrics on the saved predictions differs from eval"

first="$(ls "${work}/one/predictions" | head -1)"
rm "${work}/one/predictions/${first}"
rc=0
"${bin}" metrics --pred "${work}/one/predictions" --truth "${work}/ds" --out "${work}/x.json" > "${work}/x.out" 2>&1 || rc=$?
[[ "${rc}" == 1 ]] || fail "a missing prediction exited ${rc}, expected 1"
grep -q "no prediction for ${first%.nii.gz}" "${work}/x.out" || { cat "${work}/x.out"; fail "the missing case is not named"; }
[[ ! -e "${work}/x.json" ]] || fail "a failed run wrote its output"
command -v gnuplot > /dev/null || fail "gnuplot missing (scripts/setup.sh installs gnuplot-nox)"
"${bin}" plot "${work}/run" --overlay-slices 2 > "${work}/plot.out" 2>&1 || { cat "${work}/plot.out"; fail "plot"; }
is_png() { [[ "$(head -c 4 "$1" 2> /dev/null | od -An -c | tr -d ' ')" == '211PNG' ]]; }
for png in losses multipliers pool val_dice teacher overlays; do
  is_png "${work}/run/plots/${png}.png" || fail "${png}.png is not a PNG"
done
columns="$(awk '!/^#/ { print NF; exit }' "${work}/run/plots/data/pool.dat")"
[[ "${columns}" == 10 ]] || fail "pool.dat: ${columns} columns, expected step + 3 organs x (acceptance, threshold, share ratio)"
grep -q "Organ gate" "${work}/run/plots/data/plots.gnuplot" || fail "the pool figure of a gated run does not show the gate"
"${bin}" train --data "${work}/ds" --run-dir "${work}/sup" --preset tiny --input-size 64 --steps 2 \
  --checkpoint-every 2 --unlabeled-batch 0 --contrastive-weight 0 --threads 1 > /dev/null 2>&1 || fail "supervised run"
"${bin}" plot "${work}/sup" --overlay-slices 1 > "${work}/plot-sup.out" 2>&1 || { cat "${work}/plot-sup.out"; fail "plot of a supervised run"; }
for png in losses val_dice overlays; do is_png "${work}/sup/plots/${png}.png" || fail "supervised run: ${png}.png missing"; done
for png in multipliers pool teacher; do
  [[ ! -e "${work}/sup/plots/${png}.png" ]] || fail "supervised run: ${png}.png drawn without data"
done
# A test case whose image data is damaged (4 KiB zeroed mid-file) is read by one rank only: that
# rank's error, naming the file, must end the 2-rank job within seconds with status 1 (its peer
# waits for it in a collective; before, the job stalled until the 300 s limit, message lost).
cp -r "${work}/ds" "${work}/bad"
damaged="${work}/bad/cases/synth_0005.h5"  # one of the 3 test cases of seed 4
dd if=/dev/zero of="${damaged}" bs=1 seek=$(($(stat -c %s "${damaged}") / 2)) count=4096 conv=notrunc 2> /dev/null
start=$SECONDS
rc=0
timeout 120 "${mpiexec}" -np 2 --oversubscribe --bind-to none "${bin}" eval --checkpoint "${ckpt}" --data "${work}/bad" \
  --out "${work}/bad-eval" --threads 1 > "${work}/bad.out" 2>&1 || rc=$?
elapsed=$((SECONDS - start))
[[ "${rc}" == 1 ]] || { cat "${work}/bad.out"; fail "eval with a damaged case on one rank exited ${rc}, expected 1"; }
((elapsed <= 60)) || fail "eval with a damaged case took ${elapsed} s to end"
[[ "$(grep -c "^error: \[rank [01]\] ${damaged}: dataset 'image'" "${work}/bad.out")" == 1 ]] \
  || { cat "${work}/bad.out"; fail "expected one rank's error naming ${damaged}"; }
[[ ! -e "${work}/bad-eval/metrics.json" ]] || fail "a failed eval wrote metrics"
echo "eval and metrics: 1 rank == 2 ranks == metrics on saved predictions; missing prediction named; plots;" \
     "a damaged case on one rank ended the 2-rank eval in ${elapsed} s with its error"
