#!/usr/bin/env bash
# train_head from a cache four times larger than the memory it may use (issue #19): a synthetic
# raw-f32 cache of ~400 MB (D = 25088, the 224 px record size) is trained on in a child cgroup
# (v1 memory controller) whose memory.limit_in_bytes, resident memory plus page cache, is a
# quarter of the cache's size. Checks: the run completes with no OOM kill, the group's peak
# (memory.max_usage_in_bytes) stays within the limit, the file's pages were really read under the
# limit (evicted first), and head.bin equals the unlimited run's byte for byte with either order
# (with --order blocks under the limit the read-ahead thread gives back the pages of finished
# blocks, train_head/read_ahead.h: that changes nothing that is read), and the blocks run charges
# the limit far less often than the default order (memory.failcnt: the pages were given back, not
# reclaimed). Speed is measured by bench/scale_bench.sh, not here.
# Usage: tests/scale/test_scale_cgroup.sh BUILD_DIR. Exit 0 pass, 1 fail, 77 skip (never under
# CI=true: CI must run it).
set -uo pipefail
BUILD=$(cd "${1:?usage: test_scale_cgroup.sh BUILD_DIR}" && pwd)
BIN=$BUILD/bin
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/cgroup.sh"
IMAGES_PER_CLASS=${SCALE_TEST_IMAGES_PER_CLASS:-2000}  # 2 × 2000 records of 100 KB

log() { echo "scale-cgroup: $*" >&2; }
skip_or_fail() {
  if [ "${CI:-}" = "true" ]; then
    log "FAIL (CI must not skip): $*"
    exit 1
  fi
  log "SKIP: $*"
  exit 77
}
fail() {
  log "FAIL: $*"
  exit 1
}

for t in train_head scale_cache_writer; do [ -x "$BIN/$t" ] || fail "$BIN/$t not built"; done
W=$(mktemp -d /tmp/vggcache-scale-XXXXXX)
trap 'cg_cleanup; rm -rf "$W"' EXIT
trap 'exit 1' INT TERM

cg_create $((64 << 20)) || skip_or_fail "cgroup v1 memory limit not writable here"
cg_cleanup

"$BIN/scale_cache_writer" "$W/train" 25088 "$IMAGES_PER_CLASS" 1 1 >/dev/null || fail "writing the train cache"
"$BIN/scale_cache_writer" "$W/test" 25088 50 1 2 >/dev/null || fail "writing the test cache"
cache_bytes=$(stat -c %s "$W/train/data.mdb")
limit=$((cache_bytes / 4))
log "cache $((cache_bytes >> 20)) MB, limit $((limit >> 20)) MB"

settings=(--test "$W/test" --epochs 2 --batch 50 --hidden 8 --threads 2 --quiet)
blocks=(--order blocks --block-records 16)
"$BIN/train_head" --train "$W/train" --out "$W/free" "${settings[@]}" > "$W/free.log" 2>&1 ||
  fail "unlimited run: $(tail -n 5 "$W/free.log")"
"$BIN/train_head" --train "$W/train" --out "$W/free-blocks" "${settings[@]}" "${blocks[@]}" \
  > "$W/free-blocks.log" 2>&1 || fail "unlimited blocks run: $(tail -n 5 "$W/free-blocks.log")"

# run_limited NAME ARGS...: one run in a fresh group after evicting the caches' pages.
run_limited() {
  local name=$1 peak kills resident
  shift
  drop_pages "$W/train/data.mdb" "$W/test/data.mdb"
  resident=$(fincore --bytes --noheadings --output RES "$W/train/data.mdb" 2>/dev/null || echo 0)
  [ "${resident:-0}" -lt $((cache_bytes / 10)) ] ||
    fail "$name: $resident bytes of the cache still resident after evicting it"
  cg_create "$limit" || fail "$name: creating the limited group"
  local cg=$CG
  cg_run "$cg" "$BIN/train_head" --train "$W/train" --out "$W/$name" "${settings[@]}" "$@" \
    > "$W/$name.log" 2>&1 || fail "$name: train_head under the $((limit >> 20)) MB limit failed" \
    "(exit $?, OOM kills $(cg_oom_kills "$cg")): $(tail -n 5 "$W/$name.log")"
  peak=$(cat "$cg/memory.max_usage_in_bytes")
  kills=$(cg_oom_kills "$cg")
  FAILCNT=$(cat "$cg/memory.failcnt")
  [ "$kills" = 0 ] || fail "$name: $kills OOM kills in the limited group"
  [ "$peak" -le "$limit" ] || fail "$name: peak $peak bytes over the limit $limit"
  log "$name: peak $((peak >> 20)) MB of $((limit >> 20)) MB, failcnt $(cat "$cg/memory.failcnt")," \
    "$(grep -o '[0-9]* vectors/s' "$W/$name.log")"
  cg_cleanup
}

run_limited limited
uniform_failcnt=$FAILCNT
cmp -s "$W/free/head.bin" "$W/limited/head.bin" ||
  fail "head.bin under the limit differs from the unlimited run's (default order)"
run_limited blocks "${blocks[@]}"
cmp -s "$W/free-blocks/head.bin" "$W/blocks/head.bin" ||
  fail "head.bin under the limit differs from the unlimited run's (--order blocks)"
[ $((FAILCNT * 10)) -lt "$uniform_failcnt" ] ||
  fail "--order blocks charged the limit $FAILCNT times, the default order $uniform_failcnt:" \
    "finished blocks were not given back"
log "PASS"
