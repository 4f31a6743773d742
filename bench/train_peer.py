"""The PyTorch peer of bench/train_bench.sh: the same head trained by torch on the same vectors
held in memory. The recipe lives in tests/py/ref_head_train.py (shared with the statistical
parity test); this wrapper only runs it, so the benchmark and the test cannot drift apart."""
import os
import runpy
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.argv[0] = os.path.join(here, "..", "tests", "py", "ref_head_train.py")
runpy.run_path(sys.argv[0], run_name="__main__")
