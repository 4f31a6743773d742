"""What every Python ctest of vggcache starts with: its BUILD_DIR argument, the carbike64 dataset,
and the skip rule (exit 77, which ctest reports as skipped; under CI=true a missing prerequisite
is a failure instead, because CI must not pass by skipping)."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def skip(why, counted=False):
    """Exit as skipped, or as failed under CI=true. `counted`: the test prints an
    "N passed, M failed" line that summaries read, so print one for the failure too."""
    if os.environ.get("CI") == "true":
        print(f"FAIL (CI must not skip): {why}")
        if counted:
            print("0 passed, 1 failed")
        sys.exit(1)
    print(f"SKIP: {why}")
    sys.exit(77)


def bin_dir(script):
    """The build's bin/ from the single BUILD_DIR argument; usage error (exit 2) otherwise."""
    if len(sys.argv) != 2:
        print(f"usage: {script} BUILD_DIR", file=sys.stderr)
        sys.exit(2)
    return os.path.join(os.path.abspath(sys.argv[1]), "bin")


def carbike64(counted=False):
    """The shared dataset: $VGGCACHE_CARBIKE, else ../shared/datasets/carbike64 beside the repo."""
    path = os.environ.get("VGGCACHE_CARBIKE") or os.path.join(ROOT, "..", "shared", "datasets",
                                                              "carbike64")
    if not os.path.isdir(os.path.join(path, "train")):
        skip(f"carbike64 not found at {path} (set VGGCACHE_CARBIKE)", counted)
    return path


def run_tool(bin_dir_, *args, rc=0):
    """Runs bin_dir_/args[0] with the other args; AssertionError (naming the command, its exit
    status and output) unless it exits rc. Returns stdout + stderr."""
    p = subprocess.run([os.path.join(bin_dir_, args[0]), *args[1:]], capture_output=True,
                       text=True)
    if p.returncode != rc:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode} (wanted {rc}):\n"
                             f"{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr


def copy_subset(src_split, counts, dst):
    """Copies the first counts[i] files (sorted by name) of class i of the ImageFolder split
    src_split into dst/<class>/; a single int takes that many of every class."""
    classes = sorted(os.listdir(src_split))
    if isinstance(counts, int):
        counts = [counts] * len(classes)
    for cls, n in zip(classes, counts):
        src = os.path.join(src_split, cls)
        os.makedirs(os.path.join(dst, cls))
        for f in sorted(os.listdir(src))[:n]:
            shutil.copy(os.path.join(src, f), os.path.join(dst, cls, f))
