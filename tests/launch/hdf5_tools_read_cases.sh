#!/usr/bin/env bash
# The HDF5 command-line tools read our case files: datasets, layout and attributes as documented
# in docs/dataset-format.md. Usage: hdf5_tools_read_cases.sh CMAFORMER_BINARY
set -euo pipefail
bin="$1"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"${bin}" synth --out "${work}/ds" --cases 2 --size 32 --slices 3 --classes 3 >/dev/null
case_file="${work}/ds/cases/synth_0001.h5"
listing="$(h5ls -v "${case_file}")"
grep -q 'image *Dataset {3/3, 32/32, 32/32}' <<<"${listing}" || fail "h5ls: image shape"
grep -q 'label *Dataset {3/3, 32/32, 32/32}' <<<"${listing}" || fail "h5ls: label shape"
grep -q 'Chunks: *{1, 32, 32}' <<<"${listing}" || fail "h5ls: slice chunks"
grep -q 'deflate-1 OPT {1}' <<<"${listing}" || fail "h5ls: gzip level 1"
grep -q 'shuffle' <<<"${listing}" || fail "h5ls: shuffle filter"

attributes="$(h5dump -A "${case_file}")"
for name in format_version case_id site spacing affine qform sform qform_code sform_code \
            source_image source_label preprocessing label_role; do
  grep -q "ATTRIBUTE \"${name}\"" <<<"${attributes}" || fail "h5dump: attribute ${name} missing"
done
grep -q '"synth_0001"' <<<"${attributes}" || fail "h5dump: case_id value"

h5dump -d label -s "0,0,0" -c "1,1,1" "${case_file}" >/dev/null || fail "h5dump: label hyperslab"
echo "h5ls and h5dump read ${case_file}: datasets, chunking, filters and all 13 attributes"
