#!/usr/bin/env bash
# launch/cmaformer-local.sh's binding, seen from inside the ranks: when the ranks fit and this
# shell may use every CPU of the machine, each rank gets its own CPUs (disjoint, T each);
# otherwise (an outer taskset, CMAF_LOCAL_BIND=none, more ranks than CPUs) every rank keeps the
# shell's CPUs. The "executable" is a script that prints its rank's allowed CPUs and arguments.
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
shell_cpus="$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)"
cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
all="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc --all)"
echo "shell CPUs ${shell_cpus} (${cpus} of ${all})"

if ((cpus >= 2)); then
  out="$("${launcher}" 2 train --data x 2>"${work}/err")" || { cat "${work}/err" >&2; fail "launcher exited non-zero"; }
  echo "${out}"
  threads=$((cpus / 2))
  grep -q -- "^rank 0 .* --threads ${threads}\$" <<< "${out}" || fail "rank 0 was not given --threads ${threads}"
  a="$(expand "$(cpus_of "${out}" 0)")"
  b="$(expand "$(cpus_of "${out}" 1)")"
  if [[ "${cpus}" == "${all}" ]]; then
    [[ "$(wc -w <<< "${a}")" == "${threads}" && "$(wc -w <<< "${b}")" == "${threads}" ]] ||
      fail "bound ranks should get ${threads} CPU(s) each: rank 0 '${a}', rank 1 '${b}'"
    for c in ${a}; do [[ " ${b} " != *" ${c} "* ]] || fail "ranks 0 and 1 share CPU ${c}"; done
  else
    [[ "${a}" == "$(expand "${shell_cpus}")" && "${b}" == "${a}" ]] ||
      fail "with only part of the machine, ranks should keep the shell's CPUs ${shell_cpus}: '${a}' / '${b}'"
  fi
  out="$(CMAF_LOCAL_BIND=none "${launcher}" 2 train --data x 2>/dev/null)"
  for r in 0 1; do
    [[ "$(cpus_of "${out}" "${r}")" == "${shell_cpus}" ]] || fail "CMAF_LOCAL_BIND=none: rank ${r}: ${out}"
  done
fi

# An outer taskset: the rank stays on it (mpirun would otherwise map onto the whole machine).
first="$(expand "${shell_cpus}" | awk '{ print $1 }')"
out="$(taskset -c "${first}" "${launcher}" 1 train --data x 2>/dev/null)"
echo "${out}"
[[ "$(cpus_of "${out}" 0)" == "${first}" ]] || fail "under taskset -c ${first} the rank ran on $(cpus_of "${out}" 0)"
# More ranks than CPUs: unbound, on the shell's CPUs.
out="$("${launcher}" $((cpus + 1)) train --data x 2>/dev/null)"
for r in $(seq 0 "${cpus}"); do
  [[ "$(cpus_of "${out}" "${r}")" == "${shell_cpus}" ]] || fail "$((cpus + 1)) ranks: rank ${r}: ${out}"
done

if CMAF_LOCAL_BIND=sockets "${launcher}" 2 train --data x 2>"${work}/err"; then fail "CMAF_LOCAL_BIND=sockets was accepted"; fi
grep -q "CMAF_LOCAL_BIND is 'sockets'; expected core" "${work}/err" || fail "no clear error: $(cat "${work}/err")"
echo "PASS"
