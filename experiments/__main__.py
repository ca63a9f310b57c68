"""`python -m experiments` is `snn-mnist`."""

from experiments.cli import main

raise SystemExit(main())
