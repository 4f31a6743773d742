#!/usr/bin/env bash
# train_head from a cache four times larger than the memory it may use (issue #19): vectors/s of
# the default (uniform) and --order blocks orders, unlimited (the cache in the page cache) and in
# a child cgroup (v1 memory controller) limited to a quarter of the cache, resident memory plus
# page cache. The peer is the unlimited run of the same build, in the same run.
# Target: --order blocks under the limit >= 0.7x the unlimited default order. Under the limit every
# epoch reads the cache from the disk, so the limited runs cannot pass the disk's records/s (a cold
# sequential read of the cache, printed first), whatever the order.
# Needs root and cgroup v1 (tests/scale/cgroup.sh); the cache is synthetic (raw-f32 records of
# DIM floats written by bin/scale_cache_writer: the vectors' values do not change the speed).
# Not a unit test. Usage: bench/scale_bench.sh [BUILD_DIR] [WORK_DIR]
# Env: SCALE_MB (cache size, default 1024), DIM (default 25088: the 224 px pool5 record), EPOCHS
#      (default 3), HIDDEN (default 256), THREADS (default 2), BLOCK_RECORDS (default 32), CODEC
#      (raw-f32, default, or raw-f16), DISK_MBS (unset: the disk as it is; N: the cold read and
#      the limited runs in a blkio group whose reads from the disk are throttled to N MB/s, a
#      disk of known rate: this VM's disk reads at ~300 MB/s to ~1.7 GB/s depending on what its
#      host has cached).
. "$(dirname "$0")/common.sh"
. "$here/../tests/scale/cgroup.sh"
work="${2:-/tmp/vggcache-scale-bench}"
size_mb="${SCALE_MB:-1024}"
dim="${DIM:-25088}"
epochs="${EPOCHS:-3}"
hidden="${HIDDEN:-256}"
block_records="${BLOCK_RECORDS:-32}"
codec="${CODEC:-raw-f32}"
disk_mbs="${DISK_MBS:-}"
trap cg_cleanup EXIT
[ -x "$build/bin/scale_cache_writer" ] ||
  { echo "scale_bench: build $build/bin/scale_cache_writer first (a test target)" >&2; exit 1; }

# Records per class for about SCALE_MB: the record's payload and 64-byte header (schema 2 runs
# add ~1-3%, docs/scale.md section 1).
[ "$codec" = raw-f16 ] && value_bytes=$((64 + 2 * dim)) || value_bytes=$((64 + 4 * dim))
per_class=$(( (size_mb << 20) / value_bytes / 2 ))
train="$work/train-$codec-d$dim-n$per_class"
mkdir -p "$work"
[ -f "$train/data.mdb" ] || "$build/bin/scale_cache_writer" "$train" "$dim" "$per_class" 1 1 "$codec"
test="$work/test-$codec-d$dim"
[ -f "$test/data.mdb" ] || "$build/bin/scale_cache_writer" "$test" "$dim" 100 1 2 "$codec"
cache_bytes=$(stat -c %s "$train/data.mdb")
record_bytes=$((cache_bytes / (2 * per_class)))  # on disk, per record
limit=$((cache_bytes / 4))
echo "cache: $((cache_bytes >> 20)) MB ($((2 * per_class)) $codec records of $dim values)," \
  "limit $((limit >> 20)) MB, hidden $hidden, $threads threads, $epochs epochs," \
  "disk $([ -n "$disk_mbs" ] && echo "throttled to $disk_mbs MB/s" || echo "as it is")"

settings=(--train "$train" --test "$test" --epochs "$epochs" --batch 100
  --hidden "$hidden" --threads "$threads" --quiet)
vps() { grep -o '[0-9]* vectors/s' "$1" | cut -d' ' -f1; }

# run_free NAME ARGS...: the whole cache in the page cache (read once first).
run_free() {
  local name=$1
  shift
  cat "$train/data.mdb" > /dev/null
  "$build/bin/train_head" "${settings[@]}" --out "$work/$name" "$@" > "$work/$name.log" 2>&1
  echo "$(vps "$work/$name.log")"
}
# limited NAME ARGS...: under the limit, from a cache evicted from the page cache first.
limited() {
  local name=$1
  shift
  drop_pages "$train/data.mdb"
  cg_create "$limit"
  local groups=("$CG")
  if [ -n "$disk_mbs" ]; then
    blk_create "$disk_mbs" "$train/data.mdb" || exit 1
    groups+=("$BLK")
  fi
  cg_run_in "${groups[@]}" -- "$build/bin/train_head" "${settings[@]}" --out "$work/$name" "$@" \
    > "$work/$name.log" 2>&1
  echo "$(vps "$work/$name.log") $(( $(cat "$CG/memory.max_usage_in_bytes") >> 20 ))" \
    "$(cg_oom_kills "$CG") $(cat "$CG/memory.failcnt")"
  cg_cleanup
}

# The disk's bound in the same run: a cold sequential read of the cache (through the throttle
# when DISK_MBS is set), as records per second.
drop_pages "$train/data.mdb"
read_groups=()
if [ -n "$disk_mbs" ]; then
  blk_create "$disk_mbs" "$train/data.mdb" || exit 1
  read_groups+=("$BLK")
fi
t0=$(date +%s.%N)
if [ ${#read_groups[@]} -gt 0 ]; then
  cg_run_in "${read_groups[@]}" -- cat "$train/data.mdb" > /dev/null
else
  cat "$train/data.mdb" > /dev/null
fi
disk=$(awk -v b="$cache_bytes" -v t0="$t0" -v t1="$(date +%s.%N)" -v r="$record_bytes" \
  'BEGIN { printf "%d %d", b / (t1 - t0) / 1e6, b / (t1 - t0) / r }')
cg_cleanup
read -r read_mbs disk_rps <<< "$disk"

blocks=(--order blocks --block-records "$block_records")
fu=$(run_free free-uniform)
fb=$(run_free free-blocks "${blocks[@]}")
read -r lu lu_peak lu_kills lu_fail <<< "$(limited limited-uniform)"
read -r lb lb_peak lb_kills lb_fail <<< "$(limited limited-blocks "${blocks[@]}")"
printf 'disk, cold sequential read:    %8d records/s  (%d MB/s)\n' "$disk_rps" "$read_mbs"
printf 'unlimited, uniform order:      %8d vectors/s\n' "$fu"
printf 'unlimited, blocks order:       %8d vectors/s\n' "$fb"
printf 'limited,   uniform order:      %8d vectors/s  peak %d MB, OOM kills %d, failcnt %d\n' \
  "$lu" "$lu_peak" "$lu_kills" "$lu_fail"
printf 'limited,   blocks order:       %8d vectors/s  peak %d MB, OOM kills %d, failcnt %d\n' \
  "$lb" "$lb_peak" "$lb_kills" "$lb_fail"
cmp -s "$work/free-uniform/head.bin" "$work/limited-uniform/head.bin" &&
  echo "head.bin: limited uniform run equals the unlimited one" ||
  echo "head.bin: limited uniform run DIFFERS from the unlimited one"
awk -v a="$lb" -v b="$fu" -v c="$lu" -v d="$disk_rps" 'BEGIN {
  printf "ratio blocks limited / uniform unlimited: %.2fx (target >= 0.7x)\n", a / b
  printf "blocks limited / disk records/s: %.2f (the limited runs read the whole cache each epoch)\n", a / d
  printf "reachable: min(unlimited, disk) / unlimited = %.2fx\n", (d < b ? d : b) / b
  printf "ratio uniform limited / uniform unlimited: %.2fx\n", c / b }'
