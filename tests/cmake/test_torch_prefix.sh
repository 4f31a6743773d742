#!/usr/bin/env bash
# VGGCACHE_TORCH_PREFIX's refusals, on fake prefixes: a LibTorch with the other libstdc++ ABI (a
# TorchConfig.cmake wrapping the real one with TORCH_CXX_FLAGS -D_GLIBCXX_USE_CXX11_ABI=0) must
# stop configuration with the message that says why, before any link error could; a prefix without
# a TorchConfig.cmake must name the variable. (The accepted case, Debian's LibTorch given through
# the variable, is what scripts/gpu-check.sh --cpu builds.)
# Usage: test_torch_prefix.sh SOURCE_DIR TORCH_DIR
set -euo pipefail
src=$1 torch_dir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# CMake wraps messages: compare with the line breaks and indentation folded into single spaces.
has() { tr '\n' ' ' <"$1" | tr -s ' ' | grep -qF "$2" || { cat "$1"; fail "no '$2'"; }; }

configure() {  # PREFIX LOG: rc of a configure (tests off) against PREFIX
  cmake -S "$src" -B "$tmp/build-$(basename "$1")" -G Ninja -DVGGCACHE_BUILD_TESTS=OFF \
    -DVGGCACHE_TORCH_PREFIX="$1" >"$2" 2>&1
}

mkdir -p "$tmp/abi0/share/cmake/Torch"
cat >"$tmp/abi0/share/cmake/Torch/TorchConfig.cmake" <<CFG
include("$torch_dir/TorchConfig.cmake")
set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=0")
CFG
if configure "$tmp/abi0" "$tmp/abi0.log"; then
  cat "$tmp/abi0.log"; fail "configure against an ABI-0 LibTorch succeeded"
fi
has "$tmp/abi0.log" "LibTorch at $tmp/abi0/share/cmake/Torch is built with -D_GLIBCXX_USE_CXX11_ABI=0"
has "$tmp/abi0.log" "system C++ libraries vggcache links (OpenCV, fmt, spdlog, TBB, LMDB) use _GLIBCXX_USE_CXX11_ABI=1"

mkdir -p "$tmp/empty"
if configure "$tmp/empty" "$tmp/empty.log"; then fail "configure against an empty prefix succeeded"; fi
has "$tmp/empty.log" "VGGCACHE_TORCH_PREFIX=$tmp/empty: no usable TorchConfig.cmake"
echo "ok: ABI-0 LibTorch and empty prefix refused with their reasons"
