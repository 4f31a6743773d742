#!/usr/bin/env bash
# check-hard's portability step: the numerics tests under every kernel that OpenBLAS and oneDNN
# can pick at run time on this CPU, forced one at a time. (None forced is `make test`'s own run;
# here it would repeat one of the forced kernels: the one this CPU picks.)
#
# OpenBLAS (DYNAMIC_ARCH) and oneDNN choose their kernels from the CPU they start on, and kernels
# round differently; a numerical bound that holds under one kernel only would pass on one machine
# and fail on the next. Each bound in these tests is derived from the computation
# (tests/test_util.h: rounding_bound) rather than tuned to a kernel; this step checks that under
# each kernel and writes, per kernel, the worst difference each comparison saw as a share of its
# bound (the tests report them through $VGGCACHE_NUMERICS_LOG).
#
# The statistical parity test (3 seeds of 10 epochs against PyTorch: 2.5-4 min a kernel here) runs
# under Haswell, the AVX2 kernel of machines without AVX-512 and the furthest from this box's
# auto-detected AVX-512 kernel (make test runs it under that one), to keep CI's time in bounds; it
# compares accuracies, which rounding moves by chance, not by kernel. KERNELS_STAT=all runs it
# under every kernel, KERNELS_STAT=none under none.
#
# The fine-tuning parity tests (test_finetune_step) compare ours with torch's float32 training;
# with VGGCACHE_FINETUNE_FLOAT64=1 in the environment they also check both against a float64
# training, the premise of their bounds (no decision within rounding of a tie), at 3× their time.
#
# Usage: tests/hard/kernels.sh BUILD_DIR SUMMARY_FILE. Exit non-zero if a test failed under any
# kernel.
set -uo pipefail
BUILD=$1
SUM=$2
LOGDIR=$BUILD/check-hard/kernels
mkdir -p "$LOGDIR"
rm -f "$LOGDIR"/*.tsv "$LOGDIR"/*.log
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
status=0

# The CPU features a kernel's instructions need: forcing a kernel the CPU cannot run would stop
# the process with SIGILL, so such a kernel is reported as not runnable here instead.
needs() {
  case $1 in
    Sandybridge) echo "avx" ;;
    Haswell | Zen) echo "avx2 fma" ;;
    SkylakeX) echo "avx512f avx512bw avx512dq avx512vl" ;;
    Cooperlake) echo "avx512f avx512bw avx512dq avx512vl avx512_bf16" ;;
    AVX2) echo "avx2" ;;
    AVX512_CORE) echo "avx512f avx512bw avx512dq avx512vl" ;;
    AVX512_CORE_VNNI) echo "avx512f avx512bw avx512dq avx512vl avx512_vnni" ;;
    AVX512_CORE_BF16) echo "avx512f avx512bw avx512dq avx512vl avx512_vnni avx512_bf16" ;;
    *) echo "" ;;
  esac
}
missing() {
  local f out=""
  for f in $(needs "$1"); do [[ $flags == *" $f "* ]] || out+=" $f"; done
  echo "${out# }"
}

# run LABEL ENV_ASSIGNMENT BINARY GTEST_FILTER: one test binary under one kernel.
run() {
  local label=$1 env=$2 bin=$3 filter=$4 log rc n f
  log="$LOGDIR/${label}.${bin}.log"
  env $env VGGCACHE_NUMERICS_LOG="$LOGDIR/${label}.tsv" "$BUILD/bin/$bin" \
    --gtest_filter="$filter" >"$log" 2>&1
  rc=$?
  n=$(grep -cE "^\[       OK \]" "$log")
  f=$(grep -cE "^\[  FAILED  \] [A-Za-z]" "$log")
  passed=$((passed + n))
  failed=$((failed + f))
  if [ $rc -ne 0 ]; then
    status=1
    [ "$f" -gt 0 ] || failed=$((failed + 1))
    echo "   $label: $bin failed (rc $rc, log $log)"
    grep -E "^\[  FAILED  \] [A-Za-z]|Failure|Expected|actual" "$log" | head -8 | sed 's/^/     /'
  fi
}

# summarise LABEL: one summary row, the worst share of a bound and which comparison it was.
summarise() {
  local label=$1 what=$2 tsv="$LOGDIR/$1.tsv" worst kernel
  worst=$(awk -F'\t' '$4 > 0 {s = $3 / $4; if (s >= m) {m = s; w = $1 ": " $2}}
                      END {if (w != "") printf "worst %.0f%% of its bound (%s)", 100 * m, w}' \
    "$tsv" 2>/dev/null)
  kernel=$(awk -F'\t' 'NR == 1 {print $5}' "$tsv" 2>/dev/null)
  echo "   $label [$kernel]: $passed passed, $failed failed; ${worst:-no comparison reported}"
  echo "numerics under $what (${kernel:-?})|$((passed + failed)) tests|$passed passed, ${worst:-?}|-" >>"$SUM"
  # Per comparison, for the closing table: kernel, test, comparison, worst, bound.
  awk -F'\t' -v k="$label" '{printf "%s\t%s\t%s\t%s\t%s\n", k, $1, $2, $3, $4}' "$tsv" \
    >>"$LOGDIR/all.tsv" 2>/dev/null
}

# each_kernel LIBRARY PREFIX "KERNEL..." "VAR..." TEST...: the tests (binary|gtest filter) under
# each kernel of the library that this CPU can run, the kernel forced through each VAR; the
# statistical parity test too under $STAT.
each_kernel() {
  local lib=$1 prefix=$2 kernels=$3 vars=$4 kernel lack env v t
  shift 4
  for kernel in $kernels; do
    lack=$(missing "$kernel")
    if [ -n "$lack" ]; then
      echo "   $lib $kernel: not runnable on this CPU (lacks $lack)"
      echo "numerics under $lib $kernel|0|not runnable on this CPU (lacks $lack)|-" >>"$SUM"
      continue
    fi
    passed=0 failed=0 env=""
    for v in $vars; do env+="$v=$kernel "; done
    for t in "$@"; do run "$prefix-$kernel" "$env" "${t%%|*}" "${t#*|}"; done
    if [ "$prefix" = blas ] && { [ "$STAT" = all ] || [ "$STAT" = "$kernel" ]; }; then
      run "$prefix-$kernel" "$env" test_train_stat_parity "*"
    fi
    summarise "$prefix-$kernel" "$lib $kernel"
  done
}

STAT=${KERNELS_STAT:-Haswell}
# OpenBLAS: the head's, the probe's and block 5's GEMMs (ours and PyTorch's reference alike: both
# processes inherit it).
each_kernel OpenBLAS blas "Haswell SkylakeX Cooperlake Zen Sandybridge" OPENBLAS_CORETYPE \
  "test_compact|*" "test_train_parity|*" "test_train_units|*" \
  "test_sweep_cli|*EqualsItsSingleRun*:*EqualSingleRunsToo*" "test_block5|*" "test_probe|*" \
  "test_finetune_run|*Frozen*:*ClassWeights*" "test_winograd|*" \
  "test_finetune_step|*Compact*:*Threads*"
# The fine-tuning runs against PyTorch (~20 s each a kernel): SkylakeX is this box's own (make
# test's run), and Zen's sgemm is Haswell's (their shares of every bound were equal here), so the
# three other kernels, to keep CI's time.
each_kernel OpenBLAS blas-ft "Haswell Cooperlake Sandybridge" OPENBLAS_CORETYPE \
  "test_finetune_step|FineTuneParity.*MatchesTorch"
# oneDNN: VGG16's convolutions in LibTorch (ours and torchvision's reference alike).
each_kernel oneDNN dnn "AVX2 AVX512_CORE AVX512_CORE_VNNI AVX512_CORE_BF16" \
  "ONEDNN_MAX_CPU_ISA DNNL_MAX_CPU_ISA" \
  "test_vgg16|Vgg16Test.*" "test_extract_resume|*CropsDoNotDependOnThreadsOrBatch*" \
  "test_predict|*AgreesWithTrainHead*:*Tta*" "test_finetune_run|*PredictAgrees*" \
  "test_precision|*"
echo "   per comparison: $LOGDIR/all.tsv"
exit $status
