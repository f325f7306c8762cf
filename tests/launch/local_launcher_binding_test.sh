#!/usr/bin/env bash
# launch/cmaformer-local.sh's binding, seen from inside the ranks: when 2 ranks divide the CPUs
# and this shell may use every online CPU, each rank gets its own CPUs (disjoint, T each);
# otherwise (an outer taskset, CMAF_LOCAL_BIND=none, another --threads, more ranks than CPUs)
# every rank keeps the shell's CPUs. The "executable" is a script that prints its rank's allowed
# CPUs and arguments.
#   local_launcher_binding_test.sh LAUNCHER
set -euo pipefail
launcher="$1"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
cat > "${work}/show_cpus.sh" <<'INNER'
#!/usr/bin/env bash
echo "rank ${OMPI_COMM_WORLD_RANK} cpus $(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status) args $*"
INNER
chmod +x "${work}/show_cpus.sh"
export CMAF_BIN="${work}/show_cpus.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
# "0-2,5" -> "0 1 2 5"
expand() {
  local out=() part
  IFS=, read -ra parts <<< "$1"
  for part in "${parts[@]}"; do
    if [[ "${part}" == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("${part}"); fi
  done
  echo "${out[*]}"
}
# cpus_of OUTPUT RANK: the CPU list rank RANK printed.
cpus_of() { awk -v r="$2" '$1 == "rank" && $2 == r { print $4 }' <<< "$1"; }
# expect_shell_cpus WHAT OUTPUT RANKS: every rank kept the shell's CPUs.
expect_shell_cpus() {
  local r
  for ((r = 0; r < $3; ++r)); do
    [[ "$(cpus_of "$2" "${r}")" == "${shell_cpus}" ]] || fail "$1: rank ${r} is not on the shell's CPUs: $2"
  done
}
shell_cpus="$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)"
cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
online="$(getconf _NPROCESSORS_ONLN)"
echo "shell CPUs ${shell_cpus} (${cpus} of ${online} online)"

if ((cpus >= 2)); then
  out="$("${launcher}" 2 train --data x 2>"${work}/err")" || { cat "${work}/err" >&2; fail "launcher exited non-zero"; }
  echo "${out}"
  threads=$((cpus / 2))
  grep -q -- "^rank 0 .* --threads ${threads}\$" <<< "${out}" || fail "rank 0 was not given --threads ${threads}"
  a="$(expand "$(cpus_of "${out}" 0)")"
  b="$(expand "$(cpus_of "${out}" 1)")"
  if ((cpus == online && cpus % 2 == 0)); then
    [[ "$(wc -w <<< "${a}")" == "${threads}" && "$(wc -w <<< "${b}")" == "${threads}" ]] ||
      fail "bound ranks should get ${threads} CPU(s) each: rank 0 '${a}', rank 1 '${b}'"
    for c in ${a}; do [[ " ${b} " != *" ${c} "* ]] || fail "ranks 0 and 1 share CPU ${c}"; done
  else
    [[ "${a}" == "$(expand "${shell_cpus}")" && "${b}" == "${a}" ]] ||
      fail "with only part of the machine, ranks should keep the shell's CPUs ${shell_cpus}: '${a}' / '${b}'"
  fi
  out="$(CMAF_LOCAL_BIND=none "${launcher}" 2 train --data x 2>/dev/null)"
  expect_shell_cpus "CMAF_LOCAL_BIND=none" "${out}" 2
  out="$("${launcher}" 2 train --data x --threads $((threads + 1)) 2>/dev/null)"
  expect_shell_cpus "--threads $((threads + 1))" "${out}" 2
fi

# An outer taskset on the shell's last CPU: the rank stays on it (mpirun would map it onto the
# machine's first CPU).
last="$(expand "${shell_cpus}" | awk '{ print $NF }')"
out="$(taskset -c "${last}" "${launcher}" 1 train --data x 2>/dev/null)"
echo "${out}"
[[ "$(cpus_of "${out}" 0)" == "${last}" ]] || fail "under taskset -c ${last} the rank ran on $(cpus_of "${out}" 0)"
# More ranks than CPUs: unbound, on the shell's CPUs.
out="$("${launcher}" $((cpus + 1)) train --data x 2>/dev/null)"
expect_shell_cpus "$((cpus + 1)) ranks" "${out}" $((cpus + 1))

if CMAF_LOCAL_BIND=sockets "${launcher}" 2 train --data x 2>"${work}/err"; then
  fail "CMAF_LOCAL_BIND=sockets was accepted"
fi
grep -q "CMAF_LOCAL_BIND is 'sockets'; expected cpus" "${work}/err" || fail "no clear error: $(cat "${work}/err")"
echo "PASS"
