"""experiments: the `snn-mnist` command line, pipelines, figures and reports.

Experiments import the library packages (lif_core, training, plasticity); the
library never imports experiments.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("snn-mnist")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
