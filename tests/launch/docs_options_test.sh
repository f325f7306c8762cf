#!/usr/bin/env bash
# docs/configuration.md lists every option of every command: each `--option` that
# `cmaformer CMD --help` prints must appear as a table row in the doc's "## cmaformer CMD"
# section (and each command must have a section). Fails naming what is missing.
set -euo pipefail
bin="$1"
doc="$2"
missing=0
mapfile -t cmds < <("${bin}" --help | awk '/^commands:/ {on = 1; next} on && NF {print $1}')
(( ${#cmds[@]} > 5 )) || { echo "could not read the command list from ${bin} --help" >&2; exit 1; }
for cmd in "${cmds[@]}"; do
  section="$(awk -v h="## cmaformer ${cmd}" '$0 == h {on = 1; next} on && /^## / {exit} on' "${doc}")"
  if [[ -z "${section}" ]]; then
    echo "${doc}: no section '## cmaformer ${cmd}'" >&2
    missing=$((missing + 1))
    continue
  fi
  # Options of the command itself (the "Common options" --help/--config are described once above).
  mapfile -t options < <("${bin}" "${cmd}" --help | awk '/^Common options/ {exit} /^  --/ {print $1}')
  (( ${#options[@]} > 0 )) || { echo "no options parsed from cmaformer ${cmd} --help" >&2; exit 1; }
  for option in "${options[@]}"; do
    if ! grep -qF "| \`${option}\` | \`${option#--}\` |" <<< "${section}"; then
      echo "${doc}: cmaformer ${cmd}: option ${option} has no row" >&2
      missing=$((missing + 1))
    fi
  done
done
if (( missing > 0 )); then
  echo "${missing} option(s) or command(s) undocumented in ${doc}" >&2
  exit 1
fi
echo "every option of ${#cmds[@]} commands is in ${doc}"
