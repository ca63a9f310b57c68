"""benchmarks: timing our implementation against its peers (`snn-mnist bench`).

`variants` holds every implementation as its users write it, `worker` times one
in a fresh process, `harness` runs them all, interleaved over rounds.
"""
