"""experiments: the `snn-mnist` command line, pipelines, figures and reports.

Experiments import the library packages (lif_core, training, plasticity); the
library never imports experiments.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# torch and Numba each bring their own OpenMP runtime, so a process running
# both has two thread pools.  OpenMP's default lets idle threads spin for a
# while after each parallel region; alternating torch matmuls with Numba
# kernels, each pool's spinning threads then take the cores the other pool
# needs.  On a 2-core machine that made a training step 5-20x slower.  Passive
# waiting must be chosen before torch is first imported, which is why it sits
# here, in the package the command line and the benchmarks load first; an
# explicit OMP_WAIT_POLICY in the environment wins.  Library users who mix torch
# and Numba in their own scripts should export OMP_WAIT_POLICY=PASSIVE too.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("snn-mnist")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
