# Shared by slurm/submit-extract and slurm/submit-sweep: option parsing, sbatch pass-through flags,
# job submission. Sourced, not run.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARDS=""        # --shards N
OUT=""           # --out DIR
BIN=""           # --bin DIR: where extract, featcache and train_head are
TASKS=""         # --tasks I,J,...: submit only these array tasks
WAIT=0           # --wait: block until the final job ends; its exit status is ours
DRY_RUN=0        # --dry-run: print the sbatch commands only
GPU=0            # --gpu: --gres=gpu:1 per array task
NO_MERGE=0       # --no-merge (submit-extract): keep the shards as a set instead of merging
SBATCH_ALL=()    # flags for every job (partition, account, time, ...)
SBATCH_TASK=()   # flags for the array tasks only (CPUs, GPUs)
TOOL_ARGS=()     # everything after --, for the tool the tasks run

die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

# Parses the options of the submit commands into the globals above.
parse_common() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --) shift; TOOL_ARGS=("$@"); break ;;
      -h|--help) usage; exit 0 ;;
      --shards) SHARDS=${2:?--shards needs N}; shift ;;
      --out) OUT=${2:?--out needs a path}; shift ;;
      --bin) BIN=${2:?--bin needs a directory}; shift ;;
      --tasks) TASKS=${2:?--tasks needs I,J,...}; shift ;;
      --wait) WAIT=1 ;;
      --dry-run) DRY_RUN=1 ;;
      --gpu) GPU=1 ;;
      --partition|--account|--time|--qos|--mem|--constraint|--reservation|--nodelist|--exclude)
        SBATCH_ALL+=("$1=${2:?$1 needs a value}"); shift ;;
      --partition=*|--account=*|--time=*|--qos=*|--mem=*|--constraint=*|--reservation=*|\
      --nodelist=*|--exclude=*)
        SBATCH_ALL+=("$1") ;;
      --cpus-per-task|--gres|--gpus-per-task|--mem-per-cpu)
        SBATCH_TASK+=("$1=${2:?$1 needs a value}"); shift ;;
      --cpus-per-task=*|--gres=*|--gpus-per-task=*|--mem-per-cpu=*)
        SBATCH_TASK+=("$1") ;;
      --sbatch) SBATCH_ALL+=("${2:?--sbatch needs a flag}"); shift ;;
      --sbatch=*) SBATCH_ALL+=("${1#--sbatch=}") ;;
      --no-merge) NO_MERGE=1 ;;
      *) die "unknown option $1 (the tool's own flags go after --; see --help)" ;;
    esac
    shift
  done
  [[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || die "--shards N (N >= 1) is required"
  [ -n "$OUT" ] || die "--out is required"
  [ "$GPU" = 1 ] && SBATCH_TASK+=("--gres=gpu:1")
  if [ -z "$BIN" ]; then
    # The repository's build, else the tools on PATH.
    if [ -x "$HERE/../build/bin/extract" ]; then BIN=$(cd "$HERE/../build/bin" && pwd)
    elif command -v extract >/dev/null; then BIN=$(dirname "$(command -v extract)")
    else die "no tools found: pass --bin DIR (the build's bin directory)"; fi
  fi
  BIN=$(cd "$BIN" && pwd) || die "--bin $BIN: no such directory"
  command -v sbatch >/dev/null || [ "$DRY_RUN" = 1 ] || die "sbatch not found (is Slurm installed?)"
  if [ -n "$TASKS" ]; then
    local t
    for t in ${TASKS//,/ }; do
      [[ "$t" =~ ^[0-9]+$ ]] && [ "$t" -lt "$SHARDS" ] ||
        die "--tasks: $t is not in 0..$((SHARDS - 1))"
    done
  fi
}

# The array tasks to submit: --tasks, or every task for which `task_done I` fails.
pending_tasks() {
  if [ -n "$TASKS" ]; then
    echo "$TASKS"
    return
  fi
  local i list=()
  for ((i = 0; i < SHARDS; i++)); do
    task_done "$i" || list+=("$i")
  done
  local IFS=,
  echo "${list[*]}"
}

# Runs (or, with --dry-run, prints) sbatch with the given arguments; prints the job id.
submit() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '%q ' sbatch "$@" >&2
    echo >&2
    echo "DRYRUN$RANDOM"
    return
  fi
  local id
  id=$(sbatch --parsable "$@") || die "sbatch failed"
  echo "${id%%;*}"
}

# Submits the job that collects the tasks' work (after `dep`, a job id or ""), and with --wait
# blocks until it ends and returns its exit status.
submit_final() {
  local dep=$1 name=$2
  shift 2
  local args=()
  [ -n "$dep" ] && args+=("--dependency=afterok:$dep" "--kill-on-invalid-dep=yes")
  if [ "$WAIT" = 1 ] && [ "$DRY_RUN" = 0 ]; then
    echo "$(basename "$0"): waiting for the $name job (after the array)..." >&2
    local rc=0
    sbatch --wait "${args[@]}" "$@" >&2 || rc=$?
    [ "$rc" = 0 ] || echo "$(basename "$0"): the $name job did not succeed (exit $rc); rerun \
this command to resubmit what is unfinished" >&2
    return "$rc"
  fi
  FINAL_JOB=$(submit "${args[@]}" "$@")
}

shard_name() { printf 'shard-%04d' "$1"; }
