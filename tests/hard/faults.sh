#!/usr/bin/env bash
# Fault injection against the real tools: killed extraction (SIGKILL at seeded random moments,
# then rerun), a full disk (RLIMIT_FSIZE), two writers on one cache, killed training. Every final
# cache must equal an uninterrupted run's, record for record and byte for byte.
# Usage: tests/hard/faults.sh BUILD_DIR [SUMMARY_FILE]
# Prints one summary row per fault ("fault|trials|held|lost") to SUMMARY_FILE (default stdout).
set -uo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
SUMMARY=${2:-/dev/stdout}
BIN=$BUILD/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CARBIKE=${VGGCACHE_CARBIKE:-$ROOT/../shared/datasets/carbike64}
SEED=${FAULT_SEED:-20261129}
CHAINS=${FAULT_CHAINS:-5}
KILLS_PER_CHAIN=${FAULT_KILLS:-5}
RANDOM=$SEED

if [ ! -d "$CARBIKE/train" ]; then
  echo "faults: carbike64 not found at $CARBIKE" >&2
  exit 1
fi
W=$(mktemp -d /tmp/vggcache-faults-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
failures=0
row() { echo "$1|$2|$3|$4" >>"$SUMMARY"; }
fail() { echo "FAULT CHECK FAILED: $*" >&2; failures=$((failures + 1)); }

# A split of 200 images (100 per class, links) plus two bad files, so skips are exercised too.
for cls in bicycle car; do
  mkdir -p "$W/split/$cls"
  ls "$CARBIKE/train/$cls" | sort | head -100 | while read -r f; do
    ln -s "$CARBIKE/train/$cls/$f" "$W/split/$cls/$f"
  done
done
printf 'not an image' >"$W/split/car/zz_text.jpg"
head -c 300 "$CARBIKE/train/car/$(ls "$CARBIKE/train/car" | head -1)" >"$W/split/bicycle/zz_truncated.jpg"

EXTRACT_ARGS=(--data "$W/split" --weights random:1 --crops 2 --flip --threads 2 --batch 16 --quiet)
# Not a shell function in the background cases: `kill -9 $!` must hit extract itself, not a subshell.
extract() { "$BIN/extract" "${EXTRACT_ARGS[@]}" --out "$@"; }

echo "faults: reference extraction"
t0=$(date +%s.%N)
extract "$W/ref" >"$W/ref.log" 2>&1 || { cat "$W/ref.log"; echo "reference run failed" >&2; exit 1; }
t1=$(date +%s.%N)
REF_SECS=$(echo "$t1 - $t0" | bc)
"$BIN/featcache" verify "$W/ref" >/dev/null || fail "reference cache does not verify"
REF_RECORDS=$("$BIN/featcache" info "$W/ref" 2>/dev/null | sed -n 's/^  "records": \([0-9]*\).*/\1/p')
echo "faults: reference: $REF_RECORDS records in ${REF_SECS}s"

# 1. Killed extraction: SIGKILL at seeded random moments, each followed by a rerun of the same
#    command, until TARGET kills have landed; a chain ends when a run completes, and its cache is
#    compared with the reference. Kills are counted by where they hit: before the first commit
#    (start-up, creation) or mid-run (some batches committed).
target=$((CHAINS * KILLS_PER_CHAIN))
ref_ms=$(echo "$REF_SECS * 1000 / 1" | bc)
kills=0 mid=0 early=0 chains=0 held=0 lost=0 attempts=0
records_of() { "$BIN/featcache" info "$1" 2>/dev/null | sed -n 's/^  "records": \([0-9]*\).*/\1/p'; }
while [ $kills -lt $target ] && [ $attempts -lt $((target * 4)) ]; do
  chains=$((chains + 1))
  cache="$W/kill$chains"
  while [ $kills -lt $target ]; do
    attempts=$((attempts + 1))
    "$BIN/extract" "${EXTRACT_ARGS[@]}" --out "$cache" >"$W/kill.log" 2>&1 &
    pid=$!
    ms=$((150 + RANDOM % (ref_ms > 300 ? ref_ms - 150 : 150)))
    sleep "$(echo "scale=3; $ms / 1000" | bc)"
    if kill -9 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null
      kills=$((kills + 1))
      n=$(records_of "$cache")
      if [ -n "$n" ] && [ "$n" -gt 0 ]; then mid=$((mid + 1)); else early=$((early + 1)); fi
      # After every kill the cache must open and verify as far as it was committed.
      if [ -f "$cache/data.mdb" ]; then
        "$BIN/featcache" verify --allow-incomplete "$cache" >"$W/v.log" 2>&1 ||
          { fail "chain $chains: partial cache does not verify"; cat "$W/v.log" >&2; }
      fi
    else
      wait "$pid" 2>/dev/null
      break  # the run completed before the kill: the chain is done
    fi
  done
  extract "$cache" >"$W/kill.final.log" 2>&1 || { fail "chain $chains: final rerun failed"; cat "$W/kill.final.log" >&2; }
  if "$BIN/featcache" diff "$W/ref" "$cache" >"$W/diff.log" 2>&1; then
    held=$((held + 1))
  else
    fail "chain $chains: $(cat "$W/diff.log")"
    lost=$((lost + 1))
  fi
done
[ $kills -ge 20 ] || fail "only $kills kills landed (wanted $target)"
echo "faults: killed extraction: $kills kills ($mid mid-run, $early before the first commit) in $chains chains, $held/$chains final caches identical"
row "killed extraction (SIGKILL: $mid mid-run, $early at start-up)" "$kills" "$held/$chains caches identical" "$lost"

# 2. Full disk: the data file may not grow past a limit; clear error, committed data intact,
#    and a rerun with room finishes the identical cache.
ref_kb=$(du -k "$W/ref/data.mdb" | cut -f1)
limit_kb=$((ref_kb / 2))
( trap '' XFSZ; ulimit -f "$limit_kb"; extract "$W/full" ) >"$W/full.log" 2>&1
rc=$?
disk_ok=1
if [ $rc -eq 0 ]; then fail "full disk: extract exited 0 with a ${limit_kb} KB limit"; disk_ok=0; fi
grep -qiE "File too large|No space|write failed|writing .* failed" "$W/full.log" ||
  { fail "full disk: no clear error: $(tail -2 "$W/full.log")"; disk_ok=0; }
"$BIN/featcache" verify --allow-incomplete "$W/full" >"$W/v.log" 2>&1 ||
  { fail "full disk: partial cache does not verify: $(cat "$W/v.log")"; disk_ok=0; }
committed=$("$BIN/featcache" info "$W/full" 2>/dev/null | sed -n 's/^  "records": \([0-9]*\).*/\1/p')
extract "$W/full" >"$W/full2.log" 2>&1 || { fail "full disk: rerun failed"; disk_ok=0; }
"$BIN/featcache" diff "$W/ref" "$W/full" >"$W/diff.log" 2>&1 ||
  { fail "full disk: $(cat "$W/diff.log")"; disk_ok=0; }
echo "faults: full disk: exit $rc, '$(grep -m1 -iE "error" "$W/full.log" | cut -c1-150)', $committed records kept, rerun identical: $disk_ok"
row "full disk (RLIMIT_FSIZE ${limit_kb} KB, $committed records committed before)" 1 "$disk_ok/1 clear error + intact + identical rerun" "$((1 - disk_ok))"

# 3. Two writers: the second is refused; readers of the running cache see only whole batches.
"$BIN/extract" "${EXTRACT_ARGS[@]}" --out "$W/two" >"$W/two1.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -f "$W/two/data.mdb" ] && break; sleep 0.1; done
sleep 1
extract "$W/two" >"$W/two2.log" 2>&1
rc2=$?
two_ok=1
if [ $rc2 -eq 0 ] || ! grep -q "another process is writing" "$W/two2.log"; then
  fail "second writer not refused (exit $rc2): $(tail -1 "$W/two2.log")"; two_ok=0
fi
reads=0 read_ok=0
while kill -0 "$pid" 2>/dev/null && [ $reads -lt 10 ]; do
  reads=$((reads + 1))
  if "$BIN/featcache" verify --allow-incomplete "$W/two" >"$W/v.log" 2>&1; then read_ok=$((read_ok + 1)); else
    fail "reader of a cache being written saw: $(cat "$W/v.log")"; fi
  sleep 0.3
done
wait "$pid" || fail "first writer failed"
"$BIN/featcache" diff "$W/ref" "$W/two" >/dev/null 2>&1 || { fail "two writers: cache differs"; two_ok=0; }
echo "faults: two writers: second refused: $two_ok; $read_ok/$reads concurrent verifies clean"
row "two writers + concurrent readers ($reads reads)" "$((1 + reads))" "$((two_ok + read_ok))/$((1 + reads))" "$((1 - two_ok + reads - read_ok))"

# 4. Killed training: rerunning the same command gives the same head as an uninterrupted run.
"$BIN/extract" --data "$W/split" --weights random:1 --eval --threads 2 --quiet --out "$W/test" >/dev/null 2>&1 ||
  fail "test split extraction failed"
TRAIN_ARGS=(--train "$W/ref" --test "$W/test" --epochs 25 --all-crops --batch 20 --threads 2 --val-fraction 0.2 --quiet)
"$BIN/train_head" "${TRAIN_ARGS[@]}" --out "$W/run_ref" >"$W/tr.log" 2>&1 || { fail "training failed"; cat "$W/tr.log" >&2; }
tkills=0 theld=0
for k in 1 2 3 4 5; do
  "$BIN/train_head" "${TRAIN_ARGS[@]}" --out "$W/run_k" >/dev/null 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 5))$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null && tkills=$((tkills + 1))
  wait "$pid" 2>/dev/null
  "$BIN/train_head" "${TRAIN_ARGS[@]}" --out "$W/run_k" >/dev/null 2>&1 || fail "training rerun $k failed"
  if cmp -s "$W/run_ref/head.bin" "$W/run_k/head.bin" &&
     diff <(sed -E 's/"(seconds|train_seconds|vectors_per_second)":[^,}]*//g' "$W/run_ref/metrics.jsonl") \
          <(sed -E 's/"(seconds|train_seconds|vectors_per_second)":[^,}]*//g' "$W/run_k/metrics.jsonl") >/dev/null; then
    theld=$((theld + 1))
  else
    fail "killed training $k: rerun differs from the uninterrupted run"
  fi
done
echo "faults: killed training: $tkills kills, $theld/5 reruns identical (head.bin, metrics)"
row "killed training (SIGKILL, rerun)" "$tkills" "$theld/5 heads identical" "$((5 - theld))"

# 5. Killed sweep: rerunning the same command skips finished configurations, redoes the others,
#    and ends with the results of an uninterrupted sweep.
SWEEP_ARGS=(--train "$W/ref" --test "$W/test" --sweep "lr=1e-3,3e-4;hidden=64,128;dropout=0.3,0.5"
            --epochs 40 --all-crops --batch 20 --threads 2 --val-fraction 0.2 --quiet)
"$BIN/train_head" "${SWEEP_ARGS[@]}" --out "$W/sweep_ref" >"$W/sw.log" 2>&1 || { fail "sweep failed"; cat "$W/sw.log" >&2; }
strip() { cut -d, -f1-"$(($(head -1 "$1" | tr ',' '\n' | grep -n '^seconds$' | cut -d: -f1) - 1))" "$1"; }
skills=0 sheld=0
for k in 1 2 3; do
  rm -rf "$W/sweep_k"
  for j in 1 2; do  # two kills before the finishing rerun
    "$BIN/train_head" "${SWEEP_ARGS[@]}" --out "$W/sweep_k" >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 8 + 1))$((RANDOM % 10))"
    kill -9 "$pid" 2>/dev/null && skills=$((skills + 1))
    wait "$pid" 2>/dev/null
  done
  "$BIN/train_head" "${SWEEP_ARGS[@]}" --out "$W/sweep_k" >/dev/null 2>&1 || fail "sweep rerun $k failed"
  same=1
  diff <(strip "$W/sweep_ref/results.csv") <(strip "$W/sweep_k/results.csv") >/dev/null || same=0
  for h in "$W"/sweep_ref/*/head.bin; do
    cmp -s "$h" "$W/sweep_k/$(basename "$(dirname "$h")")/head.bin" || same=0
  done
  if [ $same -eq 1 ]; then sheld=$((sheld + 1)); else fail "killed sweep $k: results differ"; fi
done
echo "faults: killed sweep: $skills kills, $sheld/3 resumed sweeps identical (results, every head.bin)"
row "killed sweep (SIGKILL, resume)" "$skills" "$sheld/3 sweeps identical" "$((3 - sheld))"
exit $((failures > 0))
