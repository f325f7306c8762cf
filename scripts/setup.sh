#!/usr/bin/env bash
# Set-up command of cmaformer-dist: installs every Debian package the project needs on a fresh
# Debian 12 machine, then configures and builds into ./build (Release, ccache, -j2).
#
#   scripts/setup.sh            # install + configure + build
#   CMAF_SKIP_APT=1 scripts/setup.sh   # configure + build only (packages already present)
#   CMAF_BUILD_DIR=build-asan CMAF_CMAKE_ARGS="-DCMAF_SANITIZE=address" scripts/setup.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${CMAF_BUILD_DIR:-${here}/build}"
jobs="${CMAF_JOBS:-2}"  # a LibTorch TU needs ~1.2 GB; more than 2 jobs buys nothing on 2 cores

packages=(
  build-essential cmake ninja-build ccache pkg-config git time
  libtorch-dev                      # LibTorch 1.13, CPU
  libopenblas0-openmp               # without it LibTorch matmul uses the reference BLAS (20x slower)
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools            # serial HDF5 (C and C++ APIs), h5ls/h5dump
  libboost-program-options-dev
  libgoogle-glog-dev
  libgtest-dev libgmock-dev
  libnifti2-dev zlib1g-dev
  nlohmann-json3-dev
  slurmctld slurmd slurm-client munge   # the one-node Slurm of scripts/local-slurm.sh (tests)
  gnuplot-nox                       # cmaformer plot
  jq                                # bench/btcv/run.sh reads manifests and metrics with it
)

if [[ "${CMAF_SKIP_APT:-0}" != "1" ]]; then
  sudo_cmd=()
  if [[ "$(id -u)" != "0" ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
# Where the CUDA toolkit and NCCL are installed (/usr/local/cuda), the NCCL communicator must
# compile and link (cluster/CMakeLists.txt): not finding them there is an error, not a skip.
nccl_check=()
if compgen -G "/usr/local/cuda/lib64/libnccl.so*" > /dev/null || compgen -G "/usr/local/cuda/lib/libnccl.so*" > /dev/null; then
  nccl_check=(-DCMAF_NCCL_CHECK=ON)
fi

# shellcheck disable=SC2086  # CMAF_CMAKE_ARGS is a list of words on purpose
cmake -S "${here}" -B "${build_dir}" "${generator[@]}" "${nccl_check[@]}" \
  -DCMAKE_BUILD_TYPE="${CMAF_BUILD_TYPE:-Release}" ${CMAF_CMAKE_ARGS:-}
cmake --build "${build_dir}" -j "${jobs}"
