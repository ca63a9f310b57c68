"""Training-step and inference speed of our backends against snnTorch, in one run.

    python benchmarks/bench_training.py [--threads 2] [--rounds 20] [--json bench.json]

Same as `snn-mnist bench`; see `experiments/bench.py` for what is timed and how.
"""

import sys

from experiments.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
