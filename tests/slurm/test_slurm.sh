#!/usr/bin/env bash
# Sharded extraction and sweeps on a REAL Slurm: starts a single-node cluster on this machine
# (munged, slurmctld, slurmd from Debian's slurm-wlm and munge, with a generated slurm.conf in a
# temporary directory), then through sbatch (slurm/submit-extract, slurm/submit-sweep):
#   1. a 4-task extraction array plus the merge job; one task is cancelled with scancel while it
#      runs, the same submit command is rerun (it resubmits that shard alone, which resumes) and
#      the merged cache must equal a one-machine extraction, record for record, byte for byte;
#      the shard set must read as the same cache;
#   2. a 4-task sweep plus the collect job, one task cancelled and resubmitted alone (--tasks),
#      equal to the one-machine sweep (results and every head byte for byte).
# The daemons are stopped afterwards, on failure too (trap, plus a watchdog for a killed script).
# Usage: tests/slurm/test_slurm.sh BUILD_DIR. Exit 0 pass, 1 fail, 77 skip (never under CI=true).
set -uo pipefail
BUILD=$(cd "${1:?usage: test_slurm.sh BUILD_DIR}" && pwd)
BIN=$BUILD/bin
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CARBIKE=${VGGCACHE_CARBIKE:-$ROOT/../shared/datasets/carbike64}
IMAGES_PER_CLASS=${SLURM_TEST_IMAGES_PER_CLASS:-100}

log() { echo "slurm-test: $*" >&2; }
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

for c in munged slurmctld slurmd sbatch squeue scontrol scancel sinfo; do
  command -v "$c" >/dev/null || skip_or_fail "$c not found (apt-get install slurm-wlm munge)"
done
[ -d "$CARBIKE/train" ] || skip_or_fail "carbike64 not found at $CARBIKE"
for t in extract featcache train_head; do [ -x "$BIN/$t" ] || fail "$BIN/$t not built"; done

W=$(mktemp -d /tmp/vggcache-slurm-XXXXXX)
chmod 700 "$W"
C=$W/cluster
mkdir -p "$C/munge" "$C/state" "$C/spool" "$C/log"
chmod 700 "$C/munge"

# Processes with a file open (or their working directory) under DIR: this cluster's job steps.
procs_using() {
  local p
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    { readlink "$p/cwd"; ls -l "$p/fd" 2>/dev/null; } 2>/dev/null | grep -q -- "$1" &&
      echo "${p#/proc/}"
  done
}

stop_cluster() {
  # Jobs first, so no job step outlives slurmd; then the daemons by their pid files (never by
  # name: other clusters may run on this host); then any job process still holding our files.
  if [ -f "$C/slurmctld.pid" ] && kill -0 "$(cat "$C/slurmctld.pid")" 2>/dev/null; then
    scancel --quiet --user="$(id -un)" 2>/dev/null
    for _ in $(seq 1 20); do
      [ -z "$(squeue -h -t PD,R,CG -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for f in "$C/slurmd.pid" "$C/slurmctld.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
  done
  [ -S "$C/munge/munge.socket" ] && munged --stop --socket="$C/munge/munge.socket" >/dev/null 2>&1
  for _ in $(seq 1 20); do
    alive=0
    for f in "$C/slurmd.pid" "$C/slurmctld.pid" "$C/munge/munged.pid"; do
      [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for f in "$C/slurmd.pid" "$C/slurmctld.pid" "$C/munge/munged.pid"; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
  done
  local left
  left=$(procs_using "$W")
  [ -n "$left" ] && kill -9 $left 2>/dev/null
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    log "logs of the failed run:"
    tail -n 30 "$C"/log/*.log "$W"/*.log "$W"/train-merged.shards/logs/* "$W"/sweep-slurm/logs/* \
      >&2 2>/dev/null
  fi
  stop_cluster
  [ -n "${WATCHDOG:-}" ] && kill -9 "$WATCHDOG" 2>/dev/null && wait "$WATCHDOG" 2>/dev/null
  if [ -n "${SLURM_TEST_KEEP:-}" ]; then log "kept $W"; else rm -rf "$W"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port (nothing listening) for slurmctld and slurmd, so parallel runs never collide.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# ---- The cluster ----
HOST=$(hostname -s)  # slurmd finds its node by this name; addresses are given, so no DNS needed
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
while [ "$SLURMD_PORT" = "$CTLD_PORT" ]; do SLURMD_PORT=$(free_port); done
dd if=/dev/urandom of="$C/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$C/munge/munge.key"
munged --socket="$C/munge/munge.socket" --key-file="$C/munge/munge.key" \
  --log-file="$C/munge/munged.log" --pid-file="$C/munge/munged.pid" \
  --seed-file="$C/munge/munged.seed" --force ||
  fail "munged did not start: $(tail -5 "$C/munge/munged.log" 2>/dev/null)"
cat >"$C/slurm.conf" <<CONF
ClusterName=vggcache-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$C/munge/munge.socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$C/state
SlurmdSpoolDir=$C/spool
SlurmctldPidFile=$C/slurmctld.pid
SlurmdPidFile=$C/slurmd.pid
SlurmctldLogFile=$C/log/slurmctld.log
SlurmdLogFile=$C/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$C/slurm.conf
slurmctld -c -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start"
# Should this script be killed outright (no trap runs, e.g. a test timeout killing its process
# group), a watchdog in its own session still stops the daemons.
export C W SLURM_TEST_KEEP
export -f stop_cluster procs_using
setsid bash -c 'while kill -0 '"$$"' 2>/dev/null; do sleep 2; done; stop_cluster
  [ -n "${SLURM_TEST_KEEP:-}" ] || rm -rf "$W"' \
  </dev/null >/dev/null 2>&1 &
WATCHDOG=$!
for _ in $(seq 1 60); do
  sinfo -h -n "$HOST" -o '%T' 2>/dev/null | grep -qx idle && break
  sleep 1
done
sinfo -h -n "$HOST" -o '%T' 2>/dev/null | grep -qx idle ||
  fail "the node never became idle: $(sinfo 2>&1 | tail -3)"
log "cluster up: $HOST, $CPUS CPUs, ${MEM_MB} MB, slurmctld :$CTLD_PORT, slurmd :$SLURMD_PORT"

# ---- Data and the one-machine reference ----
for split in train test; do
  n=$IMAGES_PER_CLASS
  [ "$split" = test ] && n=20
  for cls in bicycle car; do
    mkdir -p "$W/$split/$cls"
    ls "$CARBIKE/$split/$cls" | sort | head -"$n" | while read -r f; do
      ln -s "$CARBIKE/$split/$cls/$f" "$W/$split/$cls/$f"
    done
  done
done
printf 'not an image' >"$W/train/car/zz_text.jpg"  # a skipped image, in the last shard
# Frequent commits (--batch 4: 2 images per chunk) so a cancelled task leaves work to resume.
EXTRACT=(--data "$W/train" --weights random:1 --crops 2 --flip --batch 4 --threads 1 --quiet)
t0=$(date +%s)
"$BIN/extract" "${EXTRACT[@]}" --out "$W/one" >"$W/one.log" 2>&1 ||
  fail "one-machine extraction: $(tail -3 "$W/one.log")"
"$BIN/extract" --data "$W/test" --weights random:1 --eval --threads 1 --quiet \
  --out "$W/test-cache" \
  >"$W/test.log" 2>&1 || fail "test extraction: $(tail -3 "$W/test.log")"
log "one-machine extraction: $(($(date +%s) - t0)) s"

# ---- 1. Extraction array + merge, one task cancelled and resubmitted ----
SUBMIT=("$ROOT/slurm/submit-extract" --shards 4 --out "$W/train-merged" --bin "$BIN"
  --cpus-per-task 1 --partition debug --time 30)
read -r ARRAY MERGE < <("${SUBMIT[@]}" -- "${EXTRACT[@]}" 2>"$W/submit1.log") ||
  fail "submit-extract: $(cat "$W/submit1.log")"
[ -n "${ARRAY:-}" ] && [ -n "${MERGE:-}" ] || fail "submit-extract printed no job ids"
log "extraction array $ARRAY, merge $MERGE"
SHARD2=$W/train-merged.shards/shard-0002
victim_state=""
# Cancel task 2 once it has committed some images but not all.
for _ in $(seq 1 1200); do
  info=$("$BIN/featcache" info "$SHARD2" 2>/dev/null)
  if echo "$info" | grep -q '"complete": true'; then
    victim_state="finished before it could be cancelled"
    break
  fi
  if echo "$info" | grep -Eq '"records": [1-9]'; then
    scancel "${ARRAY}_2" || fail "scancel ${ARRAY}_2"
    victim_state="cancelled mid-run"
    break
  fi
  sleep 0.1
done
[ -n "$victim_state" ] || fail "task 2 never started"
log "task ${ARRAY}_2: $victim_state"
# Everything settles: the other tasks finish; the merge job is cancelled (its dependency failed).
for _ in $(seq 1 600); do
  [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
  sleep 1
done
[ -z "$(squeue -h -o %i)" ] || fail "jobs still queued: $(squeue)"
if [ "$victim_state" = "cancelled mid-run" ]; then
  scontrol show job "${ARRAY}_2" | grep -q 'JobState=CANCELLED' ||
    fail "task 2 is not CANCELLED: $(scontrol show job "${ARRAY}_2" | grep JobState)"
  scontrol show job "$MERGE" | grep -q 'JobState=CANCELLED' ||
    fail "the merge job ran although a task failed: $(scontrol show job "$MERGE" | grep JobState)"
  [ -e "$W/train-merged/data.mdb" ] && fail "a merged cache exists although a task was cancelled"
  "$BIN/featcache" verify --allow-incomplete "$SHARD2" >/dev/null ||
    fail "the cancelled shard does not verify as far as it got"
fi
for i in 0 1 3; do
  grep -q "done:" "$W/train-merged.shards/logs/extract-${ARRAY}_$i.out" ||
    fail "task $i did not finish: $(tail -3 "$W/train-merged.shards/logs/extract-${ARRAY}_$i.out")"
done
# The same command again: only shard 2 is resubmitted; it resumes; the merge runs.
"${SUBMIT[@]}" --wait -- "${EXTRACT[@]}" >"$W/submit2.log" 2>&1 ||
  fail "resubmission: $(tail -20 "$W/submit2.log")"
if [ "$victim_state" = "cancelled mid-run" ]; then
  grep -q "shards 2 of 4" "$W/submit2.log" ||
    fail "the resubmission did not submit shard 2 alone: $(cat "$W/submit2.log")"
  grep -q "resumed at image" "$W/train-merged.shards/logs/extract-"*_2.out ||
    log "note: shard 2 restarted from its beginning (nothing was committed before the cancel)"
fi
"$BIN/featcache" diff "$W/one" "$W/train-merged" || fail "merged cache differs from one machine"
"$BIN/featcache" diff "$W/one" "$W/train-merged.shards" ||
  fail "the shard set differs from one machine"
"$BIN/featcache" verify "$W/train-merged" >/dev/null || fail "merged cache does not verify"
log "extraction: merged cache == one-machine cache, record for record, byte for byte"

# ---- 2. Sweep array + collect ----
SPEC='lr=1e-3,3e-4;hidden=8,16'
SWEEP=(--train "$W/train-merged" --test "$W/test-cache" --sweep "$SPEC" --epochs 2
  --val-fraction 0.2 --threads 1 --quiet)
"$BIN/train_head" "${SWEEP[@]}" --out "$W/sweep-one" >"$W/sweep-one.log" 2>&1 ||
  fail "one-machine sweep: $(tail -5 "$W/sweep-one.log")"
SUBMIT_SWEEP=("$ROOT/slurm/submit-sweep" --shards 4 --out "$W/sweep-slurm" --bin "$BIN"
  --cpus-per-task 1)
read -r SARRAY COLLECT < <("${SUBMIT_SWEEP[@]}" -- "${SWEEP[@]}" 2>"$W/sweep-submit1.log") ||
  fail "submit-sweep: $(cat "$W/sweep-submit1.log")"
# Task 3 is cancelled at once (pending or running); the collect job must not run; task 3 is then
# resubmitted alone.
scancel "${SARRAY}_3" || fail "scancel ${SARRAY}_3"
for _ in $(seq 1 600); do
  [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
  sleep 1
done
scontrol show job "$COLLECT" | grep -q 'JobState=CANCELLED' ||
  fail "the collect job ran although a task was cancelled"
"${SUBMIT_SWEEP[@]}" --tasks 3 --wait -- "${SWEEP[@]}" >"$W/sweep-submit2.log" 2>&1 ||
  fail "submit-sweep --tasks 3: $(tail -20 "$W/sweep-submit2.log")"
grep -q "tasks 3 of 4" "$W/sweep-submit2.log" || fail "task 3 was not resubmitted alone"
# Equal results: every column but the timings and the directory, and every head byte for byte.
strip() { cut -d, -f1-17 "$1"; }
head -1 "$W/sweep-one/results.csv" | grep -q ',seconds,dir$' ||
  fail "unexpected results.csv columns"
diff <(strip "$W/sweep-one/results.csv") <(strip "$W/sweep-slurm/results.csv") >&2 ||
  fail "collected sweep results differ from the one-machine sweep's"
[ "$(tail -n +2 "$W/sweep-one/results.csv" | wc -l)" = 4 ] || fail "expected 4 configurations"
for id in $(tail -n +2 "$W/sweep-one/results.csv" | cut -d, -f2); do
  heads=("$W"/sweep-slurm/shard-*/"$id"/head.bin)
  [ -f "${heads[0]}" ] || fail "configuration $id: no head in the Slurm sweep"
  cmp -s "$W/sweep-one/$id/head.bin" "${heads[0]}" || fail "configuration $id: heads differ"
done
log "sweep: collected results == one-machine sweep, heads byte for byte"
log "PASS"
