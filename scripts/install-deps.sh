#!/usr/bin/env bash
# Installs every Debian 12 package vggcache needs. Idempotent and quiet: does nothing when all are
# present. Run as root (or with sudo available).
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopencv-dev liblmdb-dev lmdb-utils libeigen3-dev libtbb-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libopenblas-dev libopenblas0-pthread
  python3-torch python3-torchvision python3-numpy python3-pil
  python3-lmdb python3-crcmod  # python/vggcache, the pure-Python cache and head reader
  libonnx-dev python3-onnx  # vggcache-export --format onnx, and its checker in the tests
  python3-sklearn  # the k-NN reference (tests/py/test_knn_sklearn.py, bench/knn_bench.sh)
  chromium  # headless screenshots of the HTML reports (tests/train/test_report_render.cpp)
  slurm-wlm munge  # the single-node Slurm cluster of tests/slurm/test_slurm.sh
  clang libclang-rt-14-dev  # libFuzzer targets (make fuzz, make check-hard)
  bc curl git  # check-hard's fault scripts; Makefile.data weights
  xz-utils patch binutils  # scripts/build_tsan_tbb.sh (check-hard's TSan-built oneTBB)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# With recommends, as the project was developed and tested (chromium's fonts, for one).
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install-deps: done"
