#!/usr/bin/env bash
# Builds the libFuzzer targets with clang + ASan/UBSan and runs each for SECONDS (default 30) on a
# fresh seed corpus. Exit non-zero if any target finds a crash, leak or timeout.
# Usage: fuzz/run.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$ROOT/build-fuzz}
SECS=${2:-30}
# -O1 -g1 (line tables for the crash reports), as scripts/check_hard.sh builds its sanitizer suites.
cmake -S "$ROOT" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DCMAKE_CXX_COMPILER=clang++ -DVGGCACHE_FUZZ=ON -DVGGCACHE_BUILD_TESTS=OFF >/dev/null
cmake --build "$B" --target fuzz_record fuzz_meta fuzz_pth fuzz_image_list fuzz_sweep_spec -j "$(nproc)"
/usr/bin/python3 "$ROOT/fuzz/make_corpus.py" "$B/corpus"
# Sweep specs (first byte: number of random draws): inline, TOML and JSON forms.
mkdir -p "$B/corpus/sweep_spec"
printf '\003lr=1e-3,3e-4,1e-4;dropout=0.3,0.5;hidden=128,256;weight-decay=0,1e-4' >"$B/corpus/sweep_spec/inline"
printf '\005lr = "1e-4..1e-2"  # log-uniform\nhidden = [64,\n 128]\nstandardize = [true, false]\n' >"$B/corpus/sweep_spec/toml"
printf '\002{"lr": [0.001, 0.0003], "all_crops": true, "seed": "0..9", "epochs": 3}' >"$B/corpus/sweep_spec/json"
status=0
for t in record meta pth image_list sweep_spec; do
  mkdir -p "$B/corpus/$t" "$B/artifacts/$t"
  echo "== fuzz_$t for ${SECS}s"
  if "$B/bin/fuzz_$t" "$B/corpus/$t" -max_total_time="$SECS" -seed=1 -rss_limit_mb=2048 -timeout=10 \
      -max_len=65536 -artifact_prefix="$B/artifacts/$t/" -print_final_stats=1 >"$B/fuzz_$t.log" 2>&1; then
    echo "   ok: $(grep -E 'stat::number_of_executed_units' "$B/fuzz_$t.log" | awk '{print $2}') executions, no crash"
  else
    echo "   FAILED: see $B/fuzz_$t.log and $B/artifacts/$t/"; tail -20 "$B/fuzz_$t.log"; status=1
  fi
done
exit $status
