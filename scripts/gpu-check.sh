#!/usr/bin/env bash
# The GPU check of #20, in one run (about 8 minutes at most) on a machine with a CUDA GPU, a pip
# torch with CUDA (python3), CMake, Ninja and a C++ compiler, but no Debian packages and no
# network. Everything else travels in the working tree (about 22 MB of the 64 MiB):
# third_party/gpu-deps (8.8 MB, made here by scripts/gpu-check-deps.sh, git-ignored: carry it)
# and carbike64 (11 MB: ../shared/datasets/carbike64, or shared/datasets/carbike64 in the tree).
#   1. builds extract, vgg16_compare and featcache against that torch (VGGCACHE_TORCH_PREFIX) and
#      the bundled dependencies only (VGGCACHE_EXTRACT_ONLY, libjpeg decoder: no OpenCV), and
#      checks that no header or library came from the system instead of the bundle;
#   2. CPU float32 vs device features of the same carbike64 views: fp32 within 1e-4 relative
#      (fails otherwise), bf16 and fp16 reported;
#   3. extract on carbike64/train at 64 and 224 px, fp32 and bf16: images/s next to PyTorch's own
#      forward-only throughput on the same device (scripts/gpu_check_peer.py), with the GPU's
#      utilisation sampled by nvidia-smi during each run.
# --cpu (or GPU_CHECK_DRY=1): the same steps on the CPU, against Debian's LibTorch through the
# same VGGCACHE_TORCH_PREFIX path, on a few images: proves the script up to the GPU calls; there
# the reduced build's cache is also compared with build/bin/extract's (OpenCV decoder), when built.
# Results: $OUT (default build-gpu-check/out): summary.txt and the logs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cpu=${GPU_CHECK_DRY:-0}
[ "${1:-}" = "--cpu" ] && cpu=1
deps=${DEPS:-$root/third_party/gpu-deps}
# ../shared beside the checkout here; shared/ inside the working tree where it travels.
carbike=${CARBIKE:-$root/../shared/datasets/carbike64}
[ -d "$carbike" ] || [ -n "${CARBIKE:-}" ] || carbike=$root/shared/datasets/carbike64
build=${BUILD:-$root/build-gpu-check}
out=${OUT:-$build/out}
python=${PYTHON:-python3}
t_start=$(date +%s)
mkdir -p "$out"
summary=$out/summary.txt
: >"$summary"
say() { echo "gpu-check: $*" | tee -a "$summary"; }
die() { say "FAILED: $*"; exit 1; }
elapsed() { echo $(($(date +%s) - t_start)); }

[ -d "$deps/root/usr/include" ] || die "$deps: no bundled dependencies (run scripts/gpu-check-deps.sh on a Debian 12 machine and carry third_party/gpu-deps)"
[ -d "$carbike/train" ] || die "$carbike: no carbike64 dataset (CARBIKE=DIR)"
if [ "$cpu" = 1 ]; then
  device=cpu
  python=${PYTHON:-/usr/bin/python3}
  torch_prefix=${TORCH_PREFIX:-/usr/lib/x86_64-linux-gnu/cmake/Torch}
  jobs=${JOBS:-2}
  per_class=${GPU_CHECK_IMAGES:-8}  # images per class for the extract runs
  crops=2 batch=16 peer_batch=16 peer_seconds=2 compare_images=4
  precisions="fp32 bf16"
else
  device=cuda
  command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no GPU driver here (use --cpu)"
  torch_prefix=${TORCH_PREFIX:-$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')}
  jobs=${JOBS:-$(nproc)}
  per_class=${GPU_CHECK_IMAGES:-1000}
  # No --batch: extract sizes it from the GPU's free memory, and the peer runs that batch.
  crops=2 batch= peer_batch=256 peer_seconds=5 compare_images=16
  precisions="fp32 bf16"
  # Torch's CMake config looks for the CUDA toolkit; naming the architecture skips its probe.
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
fi
# Debian 12's libraries in the bundle need glibc >= 2.34 and GCC 12's libstdc++ (GLIBCXX_3.4.30).
glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
[ "$(printf '%s\n' 2.34 "$glibc" | sort -V | head -1)" = 2.34 ] ||
  die "glibc $glibc here; the bundled Debian 12 libraries need >= 2.34"
libstdcxx=$(${CXX:-c++} -print-file-name=libstdc++.so.6)
grep -aq GLIBCXX_3.4.30 "$(readlink -f "$libstdcxx")" ||
  die "$libstdcxx lacks GLIBCXX_3.4.30 (GCC >= 12's libstdc++), which the bundled spdlog needs"
say "mode $device, torch prefix $torch_prefix, deps $deps ($(du -sh "$deps/root" | cut -f1) unpacked)"

# 1. Build. CMAKE_DISABLE_FIND_PACKAGE_PkgConfig: LMDB from the bundle's lmdb.h / liblmdb.so, not
# from a system pkg-config that would point at /usr.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVGGCACHE_EXTRACT_ONLY=ON \
  -DVGGCACHE_BUILD_TESTS=OFF -DVGGCACHE_IMAGE_DECODER=libjpeg \
  -DVGGCACHE_TORCH_PREFIX="$torch_prefix" -DCMAKE_PREFIX_PATH="$deps/root/usr" \
  -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON >"$out/configure.log" 2>&1 ||
  { tail -30 "$out/configure.log"; die "configure (log: $out/configure.log)"; }
grep "LibTorch .* at " "$out/configure.log" | sed 's/^-- /gpu-check: /' | tee -a "$summary"
cmake --build "$build" -j "$jobs" --target extract vgg16_compare featcache >"$out/build.log" 2>&1 ||
  { tail -30 "$out/build.log"; die "build (log: $out/build.log)"; }
say "built extract, vgg16_compare, featcache in $(elapsed) s"

# The bundle, not the system, must have provided every dependency: a system header or library
# here would hide a gap that the GPU machine (which has none of them) would meet.
for var in fmt_DIR spdlog_DIR TBB_DIR nlohmann_json_DIR CLI11_DIR LMDB_INCLUDE_DIR LMDB_LIBRARY \
  JPEG_INCLUDE_DIR JPEG_LIBRARY_RELEASE; do
  val=$(grep "^$var:" "$build/CMakeCache.txt" | cut -d= -f2-)
  case "$val" in "$deps"/*) ;; *) die "$var=$val is not from $deps" ;; esac
done
leaks=$(ninja -C "$build" -t deps | grep -E '^ +/usr/(local/)?include/(fmt|spdlog|tbb|oneapi|nlohmann|CLI|lmdb\.h|jpeglib\.h|jconfig\.h|jmorecfg\.h|opencv4)' | sort -u || true)
[ -z "$leaks" ] || die "system headers used instead of the bundle's: $leaks"
# No OpenCV in our code. (Debian's LibTorch itself links OpenCV, so ldd would show it in --cpu.)
! nm -C "$build/extract/libextract_core.a" 2>/dev/null | grep -q ' U cv::' ||
  die "extract_core uses OpenCV in the libjpeg build"
for bin in extract vgg16_compare featcache; do
  ldd "$build/bin/$bin" >"$out/ldd-$bin.txt"
  while read -r lib; do
    grep -E "^\s*$lib" "$out/ldd-$bin.txt" | grep -q "=> $deps/" ||
      die "$bin: $lib does not resolve into $deps: $(grep -E "^\s*$lib" "$out/ldd-$bin.txt")"
  done < <(grep -oE '^\s*lib(fmt|spdlog|tbb|lmdb|jpeg)[^ ]*' "$out/ldd-$bin.txt" | tr -d ' \t')
done
say "headers and libraries: fmt, spdlog, TBB, nlohmann-json, CLI11, LMDB, libjpeg all from $deps"

# 2. Device vs CPU features of the same views.
cmp() {  # PRECISION [BOUND]
  "$build/bin/vgg16_compare" --data "$carbike/test" --weights random:1 --size 64 --crops 2 \
    --images "$compare_images" --device "$device" --precision "$1" ${2:+--bound $2} 2>&1 |
    tee -a "$out/compare.log" | tail -1
}
r=$(cmp fp32 1e-4) || die "fp32 features: $r"
say "$r"
r=$(cmp bf16) || die "bf16 features: $r"
say "$r"
if [ "$device" = cuda ]; then
  r=$(cmp fp16) || die "fp16 features: $r"
  say "$r"
else
  set +e
  msg=$("$build/bin/extract" --data "$carbike/test" --out "$out/refused" --weights random:1 \
    --precision fp16 2>&1)
  rc=$?
  set -e
  [ $rc -eq 2 ] && grep -q "needs --device cuda" <<<"$msg" ||
    die "extract --precision fp16 on the CPU: rc $rc: $msg"
  say "fp16 on the CPU refused (exit 2): $(head -1 <<<"$msg")"
fi

# 3. extract throughput next to PyTorch's, with the GPU's utilisation.
split=$out/split  # per_class images of each class (symbolic links)
rm -rf "$split"
for cls in bicycle car; do
  mkdir -p "$split/$cls"
  find "$carbike/train/$cls" -maxdepth 1 -type f | sort | sed -n "1,${per_class}p" |
    while read -r f; do ln -s "$f" "$split/$cls/"; done
done
n_images=$(find "$split" -type l | wc -l)
printf '%-6s %-5s %10s %10s %10s %s\n' size prec extract peer ratio "GPU util (mean/max %)" | tee -a "$summary"
for size in 64 224; do
  for prec in $precisions; do
    cache=$out/cache-$size-$prec
    rm -rf "$cache"
    util=n/a
    if [ "$device" = cuda ]; then
      nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 \
        >"$out/util-$size-$prec.csv" 2>/dev/null &
      smi=$!
    fi
    t0=$(date +%s.%N)
    "$build/bin/extract" --data "$split" --out "$cache" --weights random:1 --size "$size" \
      --crops "$crops" ${batch:+--batch $batch} --device "$device" --precision "$prec" --quiet \
      >"$out/extract-$size-$prec.log" 2>&1 || { kill "${smi:-}" 2>/dev/null || true; cat "$out/extract-$size-$prec.log"; die "extract $size px $prec"; }
    t1=$(date +%s.%N)
    if [ "$device" = cuda ]; then
      kill "$smi" 2>/dev/null || true
      wait "$smi" 2>/dev/null || true
      util=$(awk '{s += $1; if ($1 > m) m = $1} END {if (NR) printf "%.0f/%.0f (%d samples)", s / NR, m, NR}' "$out/util-$size-$prec.csv")
    fi
    # images/s as extract prints them (its loop only: decode + forward + commit), and whole-run.
    auto=$(grep -oE -- '--batch [0-9]+ from [^(]*' "$out/extract-$size-$prec.log" | head -1 || true)
    [ -n "$batch" ] || [ -n "$auto" ] || die "extract $size px $prec: no batch size chosen from free memory in its log"
    [ -z "$auto" ] || { peer_batch=$(awk '{print $2}' <<<"$auto"); say "  extract $size px $prec: $auto"; }
    ext=$(grep -oE '\(([0-9.]+) images/s' "$out/extract-$size-$prec.log" | grep -oE '[0-9.]+' | head -1)
    peer=$("$python" "$root/scripts/gpu_check_peer.py" --device "$device" --size "$size" \
      --batch "$peer_batch" --precision "$prec" --seconds "$peer_seconds" 2>&1 | tee -a "$out/peer.log" | tail -1)
    peer_rate=$(grep -oE '[0-9.]+ images/s' <<<"$peer" | grep -oE '^[0-9.]+' || echo 0)
    # extract runs crops views per image: compare views/s with the peer's images (= views)/s.
    ext_views=$(awk -v r="$ext" -v c="$crops" 'BEGIN {printf "%.1f", r * c}')
    ratio=$(awk -v a="$ext_views" -v b="$peer_rate" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}')
    printf '%-6s %-5s %10s %10s %10s %s\n' "$size" "$prec" "$ext_views" "$peer_rate" "$ratio" "$util" | tee -a "$summary"
    say "  extract $size px $prec: $n_images images x $crops crops, $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s wall (start-up included)"
  done
done
say "(extract and peer in views/s: extract = decode + augment + copy + forward + commit; peer = forward only on device-resident input)"

if [ "$cpu" = 1 ] && [ -x "$root/build/bin/extract" ]; then
  # The libjpeg-only decoder against the full build's OpenCV decoder: identical caches.
  "$root/build/bin/extract" --data "$split" --out "$out/cache-opencv" --weights random:1 --size 64 \
    --crops "$crops" --batch "$batch" --precision fp32 --quiet >"$out/extract-opencv.log" 2>&1 ||
    die "build/bin/extract: $(tail -3 "$out/extract-opencv.log")"
  "$build/bin/featcache" diff "$out/cache-64-fp32" "$out/cache-opencv" >"$out/diff.log" 2>&1 ||
    die "libjpeg build's cache differs from the OpenCV build's: $(tail -5 "$out/diff.log")"
  say "libjpeg-only extract = OpenCV extract on the same views: $(tail -1 "$out/diff.log")"
fi
say "done in $(elapsed) s; summary in $summary"
