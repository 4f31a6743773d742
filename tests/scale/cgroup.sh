# Helpers for running a command under a cgroup v1 memory limit (sourced by
# tests/scale/test_scale_cgroup.sh and bench/scale_bench.sh). The limit counts the group's
# resident memory AND the page cache it brings in, so a process reading a cache through its
# memory map is held to it. Child groups are made under the caller's own memory group (the only
# place it may write), named vggcache-scale-<pid>-<n>; cg_cleanup removes the ones it made.

CG_MADE=()

# Prints the caller's memory cgroup directory, or fails with a reason on stderr.
cg_parent() {
  local rel
  rel=$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
  if [ -z "$rel" ] || [ ! -d "/sys/fs/cgroup/memory$rel" ]; then
    echo "no cgroup v1 memory controller (/sys/fs/cgroup/memory; /proc/self/cgroup has no" \
      "memory line)" >&2
    return 1
  fi
  echo "/sys/fs/cgroup/memory$rel"
}

# cg_create LIMIT_BYTES: makes a child group limited to LIMIT_BYTES; its path is left in CG (not
# printed: a command substitution's subshell would not record it for cg_cleanup).
cg_create() {
  local parent cg
  parent=$(cg_parent) || return 1
  cg="$parent/vggcache-scale-$$-${#CG_MADE[@]}"
  if ! mkdir "$cg" 2>/dev/null; then
    echo "cannot create a child memory cgroup under $parent (not root, or read-only)" >&2
    return 1
  fi
  CG_MADE+=("$cg")
  if ! echo "$1" > "$cg/memory.limit_in_bytes" 2>/dev/null; then
    echo "cannot set $cg/memory.limit_in_bytes" >&2
    return 1
  fi
  CG=$cg
}

# cg_run CG CMD...: runs CMD inside CG (the shell moves itself in, then execs CMD).
cg_run() {
  local cg=$1
  shift
  sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"
}

# cg_oom_kills CG: how many processes the kernel's OOM killer killed in CG (0 on kernels that do
# not report it).
cg_oom_kills() {
  awk '$1 == "oom_kill" { print $2; found = 1 } END { if (!found) print 0 }' "$1/memory.oom_control"
}

# blk_create MB_PER_S FILE: makes a child blkio group (cgroup v1) whose reads from the disk that
# holds FILE are throttled to MB_PER_S x 10^6 bytes/s (blkio.throttle.read_bps_device): a disk of
# a known rate, where the VM's virtual disk reads anywhere between ~300 MB/s and ~1.7 GB/s
# depending on what the host has cached (docs/scale.md, section 3). Its path is left in BLK.
blk_create() {
  local dev parent blk
  dev=$(printf '%d:%d' "0x$(stat -c %t "$(df --output=source "$2" | tail -n 1)")" \
    "0x$(stat -c %T "$(df --output=source "$2" | tail -n 1)")") || return 1
  # A partition is throttled through its whole disk.
  [ -f "/sys/dev/block/$dev/partition" ] && dev=$(cat "/sys/dev/block/$dev/../dev")
  parent=/sys/fs/cgroup/blkio$(awk -F: '$2 == "blkio" { print $3 }' /proc/self/cgroup)
  blk="${parent%/}/vggcache-scale-$$-${#CG_MADE[@]}"
  if ! mkdir "$blk" 2>/dev/null; then
    echo "cannot create a child blkio cgroup under $parent (no cgroup v1 blkio, or not root)" >&2
    return 1
  fi
  CG_MADE+=("$blk")
  if ! echo "$dev $(($1 * 1000000))" > "$blk/blkio.throttle.read_bps_device" 2>/dev/null; then
    echo "cannot throttle reads of device $dev in $blk" >&2
    return 1
  fi
  BLK=$blk
}

# cg_run_in GROUP... -- CMD...: runs CMD inside every GROUP (memory, blkio).
cg_run_in() {
  local groups=()
  while [ "$1" != -- ]; do
    groups+=("$1")
    shift
  done
  shift
  sh -c 'for g in $0; do echo $$ > "$g/cgroup.procs" || exit 1; done; exec "$@"' "${groups[*]}" "$@"
}

cg_cleanup() {
  local cg i
  for cg in "${CG_MADE[@]}"; do
    # Emptied groups may take a moment to release their last charges.
    for i in 1 2 3 4 5; do
      [ -d "$cg" ] || break
      rmdir "$cg" 2>/dev/null && break
      sleep 0.2
    done
  done
  CG_MADE=()
}

# drop_pages FILE...: writes back and evicts the files' pages from the page cache, so a limited
# run has to read them itself (pages already cached are charged to whoever read them first, not
# to the limited group).
drop_pages() {
  sync "$@"
  local f
  for f in "$@"; do dd if="$f" iflag=nocache count=0 status=none; done
}
