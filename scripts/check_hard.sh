#!/usr/bin/env bash
# `make check-hard`: the reliability suite. Runs, in order:
#   1. fault injection against the real tools (tests/hard/faults.sh), then the hostile-input
#      suites of the normal build, one summary row each
#   2. the numerics tests under every OpenBLAS kernel and oneDNN ISA this CPU can run, forced one
#      at a time (tests/hard/kernels.sh): each bound must hold under every kernel
#   3. every unit test under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan)
#   4. every unit test under ThreadSanitizer (build-tsan), linked against a TSan-built oneTBB
#      (scripts/build_tsan_tbb.sh, into build-tsan-deps/onetbb; built once, then reused)
#   5. each libFuzzer target for FUZZ_SECONDS (fuzz/run.sh)
# and prints a summary table of what was tried and what held. Exit non-zero if anything failed.
# Usage: scripts/check_hard.sh BUILD_DIR     (env: FUZZ_SECONDS=30, HARD_SKIP="tsan fuzz ...",
#   CHECK_HARD_BUDGET_MIN=M with CHECK_HARD_T0=epoch seconds: the whole job should end within M
#   minutes of T0, so a step starts only if its expected minutes (measured on the 2-core box the
#   suite was sized on, rounded up; see each budget_allows call) fit in what is left; each step left
#   out is a row of the summary, "NOT RUN", and a line of output.
#   `make test` under CI=true sets both, T0 from .ci/run's start: CI has a hard limit, and on a
#   machine slower than the one the suite was sized on, a summary that says what it could not
#   run is better than a killed job that says nothing.)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
SKIP=" ${HARD_SKIP:-} "
SUM=$(mktemp)
LOGDIR=$ROOT/$BUILD/check-hard
mkdir -p "$LOGDIR"
status=0
not_run=0
T0=${CHECK_HARD_T0:-$(date +%s)}
BUDGET_MIN=${CHECK_HARD_BUDGET_MIN:-0}
# budget_allows STEP MINUTES: true if STEP, expected to take MINUTES, ends within the time budget
# (if any); else records it as not run.
budget_allows() {
  local elapsed=$(($(date +%s) - T0))
  if [ "$BUDGET_MIN" -gt 0 ] && [ $((elapsed + $2 * 60)) -gt $((BUDGET_MIN * 60)) ]; then
    echo "== check-hard [+${SECONDS}s]: $1 NOT RUN: ${elapsed}s spent since the start, it takes" \
      "~$2 min, budget ${BUDGET_MIN} min"
    echo "$1|0|NOT RUN: would end past the ${BUDGET_MIN}-min budget|-" >>"$SUM"
    not_run=$((not_run + 1))
    return 1
  fi
  return 0
}
# The heavy statistical test trains 6 full heads, and the 9:1 imbalance test 9 heads against
# PyTorch's; they prove accuracy, not memory or thread safety (the weighted loss, the balanced
# sampler and their sweep keep their unit tests under the sanitizers).
# The export tests that compare probabilities spend their time in Python, PyTorch and OpenCV DNN
# (not instrumented); the writer and the folding keep their own unit tests (test_pth_writer,
# test_fold) and the export tool its refusal tests under the sanitizers. The Winograd training
# runs against torch check numbers (test_winograd's convolutions and FineTuneThreads keep the
# code under the sanitizers); the ResNet-50/TorchScript parity and end-to-end runs spend their
# time in LibTorch forwards (their loaders and refusals stay). scale_cgroup runs train_head in a
# 98 MB memory cgroup that an instrumented binary does not fit in; test_block_order keeps the
# read order and page hints under the sanitizers.
SAN_EXCLUDE=${SAN_EXCLUDE:-'StatParity|^ImbalanceTorch\.|^Export(Onnx)?\.(PyTorch|OpenCvDnn|Standardis|SoftmaxHead|LinearProbe|FineTuned)|^FineTuneParity\.Winograd|^TorchScript\.(VitB16|Vgg16|ResNet18)MatchesPyTorch|^Backbone\.(Carbike64|ResumeMerge|PredictNeeds)|^ResNet50\.(MatchesTorchvision|RandomSeed|Bf16)|^scale_cgroup$'}
# TSan runs 5-10x slower: the kill-and-resume sweep (340 s there) and the Slurm cluster test
# (118 s) check process-level recovery and scheduling, which ASan and the plain run cover; the
# sweep's threads keep their TSan coverage in SweepCli's other tests. The fine-tuning parity runs
# (40 s each there) check numbers against PyTorch, and the class-weighted frozen run (35 s)
# numbers against the pool5 run (FineTuneRun.Frozen* runs the same threads); block 5's and FineTuner's threads keep theirs in
# Block5.ConcurrentBatches* and FineTuneThreads.*. Reading the full-size VGG16 files (35 s)
# is single-threaded, and so is the export's refusal of a tuned head (its set-up fine-tunes one;
# ASan keeps it). TorchScript modules and ResNet-50 run in LibTorch's own thread pools, which TSan
# does not see into; ASan runs their loaders and refusals.
TSAN_EXCLUDE=${TSAN_EXCLUDE:-'SweepCli\.KilledSweepResumes|^slurm_cluster$|^FineTuneParity\.|^PthReaderVgg16\.FullSizeFiles$|^Export\.RefusesATunedHead|^FineTuneRun\.ClassWeights|^TorchScript\.|^ResNet50\.|^scale_cgroup$|^PageTight\.RunsFill|^ExtractCodec\.HalfCodecs'}

# -O1 -g1, not RelWithDebInfo's -O2 -g: the optimisation level the sanitizers' documentation
# recommends, line tables for the reports' stack traces, and half the compile time (GCC with
# -fsanitize=address,undefined at -O2 -g took 36 s of CPU for train_head/sweep/collect.cpp, 17 s
# at -O1 -g1; the ASan build was 11.5 of CI's minutes).
SAN_OPT=${SAN_OPT:-"-O1 -g1 -DNDEBUG"}

# SAN_LIB="soname dir": every executable of the build must load that library from that directory.
san_suite() {  # name, build dir, sanitizer list, extra cmake arguments...
  local name=$1 dir=$2 san=$3
  shift 3
  echo "== check-hard [+${SECONDS}s]: unit tests under $name ($dir)"
  cmake -S "$ROOT" -B "$ROOT/$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$SAN_OPT" -DCMAKE_C_FLAGS_RELWITHDEBINFO="$SAN_OPT" \
    -DVGGCACHE_SANITIZE="$san" "$@" >"$LOGDIR/$name-configure.log" 2>&1 &&
    cmake --build "$ROOT/$dir" -j "$JOBS" >"$LOGDIR/$name-build.log" 2>&1
  if [ $? -ne 0 ]; then
    tail -30 "$LOGDIR/$name-configure.log" "$LOGDIR/$name-build.log"
    echo "$name build|0|build failed|-" >>"$SUM"
    status=1
    return
  fi
  # SAN_LIB's directory is in the executables' DT_RPATH (CMakeLists.txt: --disable-new-dtags
  # for TSan), which the caller's LD_LIBRARY_PATH does not outrank; checked here with the
  # caller's environment as it is, paths compared after resolving symlinks.
  if [ -n "${SAN_LIB:-}" ]; then
    local soname=${SAN_LIB% *} libdir=${SAN_LIB#* } exe got want wrong="" seen=""
    want=$(readlink -f "$libdir/$soname")
    for exe in "$ROOT/$dir"/bin/*; do
      got=$(ldd "$exe" 2>&1 | awk -v so="$soname" '$1 == so {print $3; exit}')
      [ -z "$got" ] || got=$(readlink -f "$got")
      if [ "$got" != "$want" ]; then
        wrong+=" ${exe##*/}"
        seen=${got:-none}
      fi
    done
    if [ -n "$wrong" ]; then
      echo "   $name: these do not load $want:$wrong (LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}," \
        "LD_PRELOAD=${LD_PRELOAD:-})"
      echo "unit tests under $name|0|$soname from $seen, not $want|-" >>"$SUM"
      status=1
      return
    fi
  fi
  (cd "$ROOT/$dir" && ctest -j "$JOBS" -E "$SAN_EXCLUDE${EXTRA_EXCLUDE:+|$EXTRA_EXCLUDE}" \
    --output-on-failure) \
    >"$LOGDIR/$name-ctest.log" 2>&1
  local rc=$?
  local line
  line=$(grep -E "tests passed|tests failed" "$LOGDIR/$name-ctest.log" | tail -1)
  local total passed
  total=$(echo "$line" | sed -n 's/.* out of \([0-9]*\).*/\1/p')
  passed=$(grep -cE "Test +#[0-9]+: .* Passed" "$LOGDIR/$name-ctest.log")
  echo "   $line"
  if [ $rc -ne 0 ]; then
    grep -E "Failed|ERROR: |runtime error|WARNING: ThreadSanitizer" "$LOGDIR/$name-ctest.log" | head -20
    status=1
  fi
  echo "unit tests under $name|${total:-0}|${passed} passed|-" >>"$SUM"
}

if [[ $SKIP != *" faults "* ]] && budget_allows "fault injection" 4; then
  echo "== check-hard [+${SECONDS}s]: fault injection"
  if ! bash "$ROOT/tests/hard/faults.sh" "$ROOT/$BUILD" "$SUM" 2>&1 | tee "$LOGDIR/faults.log"; then
    status=1
  fi
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if [[ $SKIP != *" badinput "* ]] && budget_allows "bad input suites" 2; then
  # The hostile-input suites of the normal build, one row each: what was fed and that it held.
  echo "== check-hard [+${SECONDS}s]: bad input suites"
  while IFS='|' read -r what bin filter; do
    exe="$ROOT/$BUILD/bin/$bin"
    [ -x "$exe" ] || { echo "$what|0|missing $bin|-" >>"$SUM"; status=1; continue; }
    "$exe" --gtest_filter="$filter" >"$LOGDIR/$bin.log" 2>&1
    rc=$?
    n=$(grep -cE "^\[       OK \]" "$LOGDIR/$bin.log")
    f=$(grep -cE "^\[  FAILED  \] [A-Za-z]" "$LOGDIR/$bin.log")
    [ $rc -eq 0 ] || status=1
    echo "   $what: $n tests passed, $f failed"
    echo "$what|$((n + f)) tests|$n held|-" >>"$SUM"
  done <<'EOT'
images: empty/truncated/random/text/bomb/dangling/dir/odd formats|test_image_decode|*
layout: no classes, empty class, top-level files, odd names|test_image_folder|*
caches: not a cache, schema, flipped bytes, truncation, writers|test_cache|*
weights: wrong keys/shapes, truncated, hostile pickles|test_pth_reader|*
weights into VGG16: missing/extra/short tensors, bad specs|test_vgg16|*Weights*:*Truncated*
extract flags, bad files, mismatched settings|test_extract_cli|*
train_head flags, mismatched caches, corrupt records|test_train_head_cli|*
sweep specs: malformed keys, values, files|test_sweep_spec|*
EOT
fi
if [[ $SKIP != *" kernels "* ]] && budget_allows "numerics under each kernel" 8; then
  echo "== check-hard [+${SECONDS}s]: numerics under each run-time kernel"
  bash "$ROOT/tests/hard/kernels.sh" "$ROOT/$BUILD" "$SUM" || status=1
fi
[[ $SKIP == *" asan "* ]] || ! budget_allows "unit tests under ASan+UBSan" 16 ||
  san_suite "ASan+UBSan" build-asan address,undefined
# ThreadSanitizer only sees the synchronisation of code it instruments. Debian's libtbb is not, so
# the suite runs against oneTBB built with -fsanitize=thread from Debian's own source package (same
# version, same patches): without it, TSan misses the happens-before edges of TBB's scheduler and
# reports races on data handed between a parallel_for's workers and its caller. TBB_DIR is given
# explicitly (CMAKE_PREFIX_PATH would not replace a TBB_DIR already cached by an older configure),
# and every executable in build-tsan/bin is checked to load that libtbb.so.12 (build DT_RPATH,
# which a caller's LD_LIBRARY_PATH does not outrank).
if [[ $SKIP != *" tsan "* ]] && budget_allows "unit tests under TSan" 14; then
  TBB_TSAN=$ROOT/build-tsan-deps/onetbb
  echo "== check-hard [+${SECONDS}s]: oneTBB built with ThreadSanitizer ($TBB_TSAN)"
  if JOBS=$JOBS bash "$ROOT/scripts/build_tsan_tbb.sh" "$TBB_TSAN" >"$LOGDIR/TSan-onetbb.log" 2>&1; then
    tail -1 "$LOGDIR/TSan-onetbb.log" | sed 's/^/   /'
    export TSAN_OPTIONS="suppressions=$ROOT/tests/hard/tsan.supp halt_on_error=1 second_deadlock_stack=1"
    EXTRA_EXCLUDE=$TSAN_EXCLUDE SAN_LIB="libtbb.so.12 $TBB_TSAN/lib" san_suite "TSan" build-tsan thread -DTBB_DIR:PATH="$TBB_TSAN/lib/cmake/TBB"
  else
    tail -30 "$LOGDIR/TSan-onetbb.log"
    echo "unit tests under TSan|0|TSan-built oneTBB failed (see TSan-onetbb.log)|-" >>"$SUM"
    status=1
  fi
fi
if [[ $SKIP != *" fuzz "* ]] && budget_allows "fuzzing" 5; then
  echo "== check-hard [+${SECONDS}s]: fuzzing, ${FUZZ_SECONDS}s per target"
  if bash "$ROOT/fuzz/run.sh" "$ROOT/build-fuzz" "$FUZZ_SECONDS" >"$LOGDIR/fuzz.log" 2>&1; then
    fz=ok
  else
    fz=FAILED
    status=1
  fi
  grep -E "^== fuzz_|ok:|FAILED" "$LOGDIR/fuzz.log"
  while read -r t n; do
    echo "fuzz $t (${FUZZ_SECONDS}s)|$n inputs|$([ "$fz" = ok ] && echo "no crash" || echo "see log")|-" >>"$SUM"
  done < <(awk '/^== fuzz_/{t=$2} /ok:/{print t, $2}' "$LOGDIR/fuzz.log")
fi

echo
echo "check-hard summary"
printf '%-70s %-12s %-40s %s\n' "what was tried" "trials" "what held" "data lost"
printf '%-70s %-12s %-40s %s\n' "--------------" "------" "---------" "---------"
while IFS='|' read -r a b c d; do printf '%-70s %-12s %-40s %s\n' "$a" "$b" "$c" "$d"; done <"$SUM"
rm -f "$SUM"
echo
if [ $status -ne 0 ]; then
  echo "check-hard: FAILURES (logs in $LOGDIR; ${SECONDS}s)"
elif [ $not_run -gt 0 ]; then
  echo "check-hard: all that ran held; $not_run step(s) NOT RUN for the time budget (${SECONDS}s)"
else
  echo "check-hard: all held (${SECONDS}s)"
fi
exit $status
