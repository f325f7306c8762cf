#!/usr/bin/env bash
# bench/ddp_step_rounds.sh as users run it, on the tiny preset: the round lines and summaries
# come out, CMAF_STEP_BIND=core works, a bad CMAF_STEP_BIND is refused, a leg that fails is
# reported with its error lines and its round left out, and a run with no round exits 1.
#   ddp_step_rounds_test.sh SCRIPT STEP_BENCH
set -euo pipefail
script="$1"; step_bench="$2"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {  # expect FILE PATTERN WHAT
  grep -qE -- "$2" "$1" || { sed 's/^/  | /' "$1" >&2; fail "$3: no line matching '$2'"; }
}
rounds() {  # rounds OUT ERR [script arguments...]: runs the script, returns its status
  local out="$1" err="$2" status=0
  shift 2
  "${script}" tiny 1 1 "$@" > "${out}" 2> "${err}" || status=$?
  return "${status}"
}

# Two rounds of the real benchmark.
CMAF_STEP_BENCH="${step_bench}" rounds "${work}/ok.out" "${work}/ok.err" 2 ||
  { cat "${work}/ok.err" >&2; fail "two rounds exited $?"; }
expect "${work}/ok.out" \
  '^round 1: pair [0-9.]+ s \(slower [0-9.]+ s\), cpu [0-9.]+ s .*; 2-rank [0-9.]+ s \([-+][0-9.]+ %, [-+][0-9.]+ % vs slower\)' \
  "round 1"
expect "${work}/ok.out" '^round 2: pair ' "round 2"
expect "${work}/ok.out" \
  'phases \(2-rank - pair, ms\): forward [-+][0-9.]+, backward [-+][0-9.]+, after backward' "phase deltas"
expect "${work}/ok.out" '^2-rank vs pair: median [-+][0-9.]+ %, range .* over 2 rounds$' "ratio summary"
expect "${work}/ok.out" "^2-rank vs the pair's slower process: median [-+][0-9.]+ %, range .* over 2 rounds$" \
  "summary against the slower process"
expect "${work}/ok.out" '^optimizer, 2-rank - pair: median [-+][0-9.]+ ms' "phase summary"
! grep -q "rounds completed" "${work}/ok.err" || fail "two good rounds reported as incomplete"
# The cores the script may use, hyperthreads of one core counted once, from its header.
cores="$(sed -nE 's/^# [^ ]+ ([0-9]+) cores \(of [0-9]+ CPUs\).*/\1/p' "${work}/ok.out")"
[[ -n "${cores}" ]] || fail "no core count in the header: $(head -1 "${work}/ok.out")"
if ((cores >= 2)); then  # a lone process on each of two cores before the rounds
  [[ "$(grep -cE '^# lone process on CPU [0-9]+: median step [0-9.]+ s$' "${work}/ok.out")" == 2 ]] ||
    fail "expected the lone step on each of two CPUs: $(grep '^#' "${work}/ok.out")"
  expect "${work}/ok.out" '^# the slower CPU takes \+[0-9.]+ % longer a step$' "CPU speed difference"
fi

# Both legs pinned, one core per process (needs 2 CPUs): a stand-in records each process's
# allowed CPUs, then runs the benchmark.
if ((cores >= 2)); then
  cat > "${work}/record_cpus.sh" <<EOS
#!/usr/bin/env bash
echo "\${OMPI_COMM_WORLD_RANK:+rank} \$(awk '/^Cpus_allowed_list:/ { print \$2 }' /proc/self/status)" \
  >> "${work}/cpus"
exec "${step_bench}" "\$@"
EOS
  chmod +x "${work}/record_cpus.sh"
  CMAF_STEP_CALIBRATE=0 CMAF_STEP_BIND=core CMAF_STEP_BENCH="${work}/record_cpus.sh" \
    rounds "${work}/pin.out" "${work}/pin.err" 1 ||
    { cat "${work}/pin.err" >&2; fail "pinned round exited $?"; }
  expect "${work}/pin.out" '; 1 rounds; binding core$' "pinned header"
  expect "${work}/pin.out" '^2-rank vs pair: median .* over 1 rounds$' "pinned summary"
  # Two pair processes and two ranks, each on one CPU, the two of a leg on different CPUs.
  pair_cpus="$(grep -v '^rank' "${work}/cpus" | sort -u | xargs)"
  rank_cpus="$(grep '^rank' "${work}/cpus" | cut -d' ' -f2 | sort -u | xargs)"
  [[ "${pair_cpus}" =~ ^[0-9]+\ [0-9]+$ && "${rank_cpus}" =~ ^[0-9]+\ [0-9]+$ ]] ||
    fail "pinned legs: pair on '${pair_cpus}', ranks on '${rank_cpus}' (expected two single CPUs each)"
  rm -f "${work}/cpus"
  CMAF_STEP_CALIBRATE=0 CMAF_STEP_BENCH="${work}/record_cpus.sh" rounds "${work}/free.out" "${work}/free.err" 1 ||
    fail "unpinned round exited $?"
  ! grep -qE ' [0-9]+$' "${work}/cpus" || fail "unpinned legs ran pinned: $(xargs < "${work}/cpus")"
fi

status=0
CMAF_STEP_BIND=sideways CMAF_STEP_BENCH="${step_bench}" rounds "${work}/bad.out" "${work}/bad.err" 1 ||
  status=$?
((status == 2)) || fail "CMAF_STEP_BIND=sideways exited ${status}, expected 2"
expect "${work}/bad.err" 'CMAF_STEP_BIND: none or core, not sideways' "bad binding message"

# A stand-in that always fails: every round is left out, the error lines shown, exit 1.
cat > "${work}/broken.sh" <<'EOS'
#!/usr/bin/env bash
echo "stand-in: cannot open the preset table" >&2
exit 3
EOS
chmod +x "${work}/broken.sh"
status=0
CMAF_STEP_BENCH="${work}/broken.sh" rounds "${work}/broken.out" "${work}/broken.err" 2 || status=$?
((status == 1)) || fail "an always failing binary exited ${status}, expected 1"
expect "${work}/broken.err" '^round 1: the pair leg failed \(exit 3, no step median\)' "failed pair leg"
expect "${work}/broken.err" 'stand-in: cannot open the preset table' "the leg's error line"
expect "${work}/broken.err" 'no round completed' "no round message"
! grep -q '^round' "${work}/broken.out" || fail "a failed round was printed as a result"
if ((cores >= 2)); then
  expect "${work}/broken.out" '^# lone process on CPU [0-9]+: median step n/a s$' "a failed lone run"
fi

# A stand-in whose second 2-rank job fails: round 2 is left out, the run still succeeds.
# Each mpirun job is told apart by its ranks' parent process (the launcher).
mkdir "${work}/jobs"
cat > "${work}/second_job_fails.sh" <<EOS
#!/usr/bin/env bash
if [[ -n "\${OMPI_COMM_WORLD_RANK:-}" ]]; then
  touch "${work}/jobs/\${PPID}"
  if (( \$(ls "${work}/jobs" | wc -l) >= 2 )); then echo "stand-in: second job refused" >&2; exit 4; fi
fi
exec "${step_bench}" "\$@"
EOS
chmod +x "${work}/second_job_fails.sh"
CMAF_STEP_CALIBRATE=0 CMAF_STEP_BENCH="${work}/second_job_fails.sh" rounds "${work}/half.out" "${work}/half.err" 2 ||
  { cat "${work}/half.err" >&2; fail "one good round of two exited $?"; }
expect "${work}/half.err" '^round 2: the 2-rank leg failed' "failed 2-rank leg"
expect "${work}/half.err" 'stand-in: second job refused' "the 2-rank leg's error line"
expect "${work}/half.err" '1 of 2 rounds completed' "incomplete count"
expect "${work}/half.out" '^2-rank vs pair: median .* over 1 rounds$' "summary of the good round"
! grep -q '^round 2:' "${work}/half.out" || fail "the failed round 2 was printed as a result"
# Known medians: the pair's processes take 1.0 and 1.5 s a step (the first to take a ticket is the
# faster), both ranks of the 2-rank job 1.6 s: pair 1.25 s, +28.0 % against it, +6.7 % against
# the slower process.
mkdir "${work}/tickets"
cat > "${work}/known.sh" <<EOS
#!/usr/bin/env bash
median=1.600
if [[ -z "\${OMPI_COMM_WORLD_RANK:-}" ]]; then
  median=1.000
  mkdir "${work}/tickets/first" 2> /dev/null || median=1.500
fi
echo "preset x: median step \${median} s (min \${median}, max \${median}, 3 steps)"
EOS
chmod +x "${work}/known.sh"
CMAF_STEP_CALIBRATE=0 CMAF_STEP_BENCH="${work}/known.sh" rounds "${work}/known.out" "${work}/known.err" 1 ||
  { cat "${work}/known.err" >&2; fail "the round with known medians exited $?"; }
expect "${work}/known.out" '^round 1: pair 1.2500 s \(slower 1.5000 s\), .*; 2-rank 1.6000 s \(\+28.0 %, \+6.7 % vs slower\)' \
  "known medians"
expect "${work}/known.out" "^2-rank vs the pair's slower process: median \+6.7 %" "known summary"
echo "ddp_step_rounds_test: all checks passed"
