"""Throughput of `snn-mnist stdp` against BindsNET's DiehlAndCook2015, each in a fresh process.

    python benchmarks/stdp_peer.py --neurons 1600 --peer-python /tmp/peer-venv/bin/python \\
        --data ../shared/data/mnist --threads 2 --json docs/stdp/peer_1600.json

Runs, one after another, each in its own process with this environment unchanged:

* ours: `snn-mnist stdp` on the first --ours-images training images of a fresh
  network, after an untimed run that fills Numba's compilation cache (one checkpoint at the end, on --eval-images labelling and test
  images), at our input rate (63.75 Hz, D&C's) and at BindsNET eth_mnist's 128 Hz;
  the figure is the training images/s the command itself records;
* the peer: `benchmarks/stdp_peer_bindsnet.py` (BindsNET's eth_mnist.py training
  loop, with its monitors and with only the spike monitor), --peer-images images
  after a warm-up, in the interpreter given by --peer-python (a virtualenv with
  BindsNET; see that script for how to make one).

The peer is far slower, so it gets fewer images; both figures are images per
second of training, which does not depend on the count once warm.  Ratios are
given to the fastest peer variant and to the slowest.  Run on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PEER_SCRIPT = REPO / "benchmarks" / "stdp_peer_bindsnet.py"
BINDSNET_RATE_HZ = 128.0  # eth_mnist.py's intensity: the rate of a white pixel


def run_ours(neurons: int, images: int, eval_images: int, threads: int, max_rate_hz: float, data: Path) -> dict[str, Any]:
    """One `snn-mnist stdp` process; returns its last checkpoint's record."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable, "-m", "experiments", "stdp", "--neurons", str(neurons),
            "--train-images", str(images), "--checkpoint-every", str(images),
            "--assign-images", str(eval_images), "--test-images", str(eval_images),
            "--max-rate", str(max_rate_hz), "--threads", str(threads), "--seed", "0",
            "--data-dir", str(data), "--out", folder,
        ]  # fmt: skip
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        record = json.loads((Path(folder) / "stdp_accuracy.json").read_text())["checkpoints"][-1]
    return {
        "implementation": f"snn-mnist stdp, {max_rate_hz:g} Hz input",
        "images": images,
        "seconds": record["train_seconds"],
        "images_per_s": record["train_images_per_second"],
    }


def run_peer(python: str, neurons: int, images: int, threads: int, monitors: str, data: Path) -> dict[str, Any]:
    """One BindsNET process; returns its JSON record."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "peer.json"
        command = [
            python, str(PEER_SCRIPT), "--neurons", str(neurons), "--images", str(images),
            "--threads", str(threads), "--monitors", monitors, "--data", str(data), "--json", str(out),
        ]  # fmt: skip
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        record = json.loads(out.read_text())
    record["implementation"] = f"BindsNET {record['bindsnet_version']} DiehlAndCook2015, {monitors} monitors"
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neurons", type=int, default=1600)
    parser.add_argument("--ours-images", type=int, default=2000)
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--peer-images", type=int, default=30)
    parser.add_argument("--peer-python", required=True, help="python of a virtualenv with BindsNET")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = args.data.resolve()

    # untimed: the first run of a fresh checkout compiles the Numba kernels into their cache
    run_ours(args.neurons, 200, args.eval_images, args.threads, 63.75, data)
    ours = [
        run_ours(args.neurons, args.ours_images, args.eval_images, args.threads, rate, data)
        for rate in (63.75, BINDSNET_RATE_HZ)
    ]
    peers = [
        run_peer(args.peer_python, args.neurons, args.peer_images, args.threads, monitors, data)
        for monitors in ("eth_mnist", "minimal")
    ]
    fastest = max(peer["images_per_s"] for peer in peers)
    slowest = min(peer["images_per_s"] for peer in peers)
    for row in ours:
        row["ratio_to_fastest_peer"] = row["images_per_s"] / fastest
        row["ratio_to_slowest_peer"] = row["images_per_s"] / slowest
    print(f"{args.neurons} neurons, {args.threads} threads, training images/s")
    for row in ours + peers:
        ratios = f"  x{row['ratio_to_fastest_peer']:,.0f} the fastest peer" if "ratio_to_fastest_peer" in row else ""
        print(f"  {row['implementation']:<50} {row['images_per_s']:10.2f} ({row['images']} images){ratios}")
    if args.json is not None:
        result = {"neurons": args.neurons, "threads": args.threads, "ours": ours, "peers": peers}
        fd, tmp = tempfile.mkstemp(dir=args.json.parent, prefix=f".{args.json.name}.")
        with os.fdopen(fd, "w") as stream:
            json.dump(result, stream, indent=2)
            stream.write("\n")
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
