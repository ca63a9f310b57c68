"""Peer throughput benchmark: BindsNET's DiehlAndCook2015, unsupervised STDP training on
MNIST, in images per second, on the CPU; the peer figure for `snn-mnist stdp`.

It imports nothing of this project and runs in its own virtualenv:

    python3 -m venv /tmp/peer-venv
    /tmp/peer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/peer-venv/bin/pip install bindsnet==0.3.4    # its pins accept torch 2.14.1
    /tmp/peer-venv/bin/python benchmarks/stdp_peer_bindsnet.py --neurons 1600 \
        --images 200 --threads 2 --data /work/shared/data/mnist --json out.json

--data holds train-images-idx3-ubyte(.gz).  Run it on an otherwise idle machine.

What is timed is the per-image training loop of BindsNET's examples/mnist/eth_mnist.py
(BINDS-LAB-UMASS/bindsnet at commit 0536f920), with that script's defaults: build
DiehlAndCook2015(n_inpt=784, n_neurons=N, exc=22.5, inh=120, dt=1.0, norm=78.4,
theta_plus=0.05, inpt_shape=(1, 28, 28)); per image, Poisson-encode image/255 * 128
with PoissonEncoder(time=250, dt=1.0) (eth_mnist does this in the DataLoader with
0 workers, i.e. in the same process, so it is timed), network.run(inputs={"X": ...},
time=250), read the monitors and store the excitatory spikes into the
[update_interval, time, N] record, network.reset_state_variables().  eth_mnist runs on
the CPU unless given --gpu (then network.to("cuda")); this benchmark is CPU only.
`--monitors eth_mnist` (default) attaches that script's monitors (spikes of X, Ae, Ai;
Ae and Ai voltages, which it records twice); `--monitors minimal` keeps only the Ae
spike monitor label assignment needs, to show what the monitors cost.  Not timed: the
label assignment and accuracy estimate eth_mnist runs once every 250 images (a few
tensor reductions), plotting (off by default), and tqdm's progress bar.

How eth_mnist's settings compare with ours (plasticity/stdp.py StdpConfig):
* Input rate: BindsNET's poisson() takes the value as a rate in Hz (mean inter-spike
  interval 1000 / (value * dt) steps, a zero interval bumped to 1), so intensity 128
  gives a white pixel about 128 Hz: twice our max_rate_hz 63.75 (D&C's 255/4 Hz).
* eth_mnist has no re-presentation loop: every image is shown once for 250 ms whatever
  the number of excitatory spikes; ours re-presents (+31.875 Hz) while fewer than 5
  spikes, up to 10 times.  The JSON reports how many timed images drew fewer than 5.
* Same as ours: dt 1 ms, 250 ms per image, exc 22.5 (Ae->Ai), inh 120 (Ai->Ae),
  theta_plus 0.05 mV, tc_theta_decay 1e7 ms, norm 78.4, nu (1e-4, 1e-2).  BindsNET
  simulates the inhibitory layer as LIF neurons and picks the one_spike winner at
  random; ours does neither (see docs/stdp.md).
torch.set_num_threads(--threads) is called the way a user would; no environment
variables are set.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bindsnet.encoding import PoissonEncoder
from bindsnet.models import DiehlAndCook2015
from bindsnet.network.monitors import Monitor

# eth_mnist.py defaults (BINDS-LAB-UMASS/bindsnet 0536f920)
EXC, INH, THETA_PLUS, TIME_MS, DT_MS, INTENSITY, NORM, UPDATE_INTERVAL = (
    22.5, 120.0, 0.05, 250, 1.0, 128.0, 78.4, 250)


def read_train_images(folder: Path) -> np.ndarray:
    """The MNIST training images as uint8 [n, 28, 28], from raw or gzipped idx."""
    stem = "train-images-idx3-ubyte"
    path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.exists()), None)
    if path is None:
        raise SystemExit(f"no {stem}[.gz] in {folder}")
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    magic, n, rows, cols = np.frombuffer(data, dtype=">u4", count=4)
    if magic != 2051:
        raise SystemExit(f"{path}: idx magic {magic}, expected 2051")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build(n_neurons: int, monitors: str) -> tuple[DiehlAndCook2015, dict[str, Monitor]]:
    network = DiehlAndCook2015(n_inpt=784, n_neurons=n_neurons, exc=EXC, inh=INH,
                               dt=DT_MS, norm=NORM, theta_plus=THETA_PLUS,
                               inpt_shape=(1, 28, 28))
    mons: dict[str, Monitor] = {}
    if monitors == "eth_mnist":  # the monitors eth_mnist.py attaches, in its order
        mons["exc_voltage"] = Monitor(network.layers["Ae"], ["v"], time=TIME_MS)
        mons["inh_voltage"] = Monitor(network.layers["Ai"], ["v"], time=TIME_MS)
        for layer in set(network.layers):
            mons[f"{layer}_spikes"] = Monitor(network.layers[layer], ["s"], time=TIME_MS)
        for layer in set(network.layers) - {"X"}:
            mons[f"{layer}_voltages"] = Monitor(network.layers[layer], ["v"], time=TIME_MS)
    else:
        mons["Ae_spikes"] = Monitor(network.layers["Ae"], ["s"], time=TIME_MS)
    for name, monitor in mons.items():
        network.add_monitor(monitor, name=name)
    return network, mons


def train_images(network: DiehlAndCook2015, mons: dict[str, Monitor],
                 encoder: PoissonEncoder, images: np.ndarray,
                 spike_record: torch.Tensor, step0: int) -> list[int]:
    """eth_mnist.py's per-image training loop; returns the Ae spike count per image."""
    counts = []
    for i, image in enumerate(images):
        x = torch.from_numpy(image.astype(np.float32) / 255.0).view(1, 28, 28) * INTENSITY
        inputs = {"X": encoder(x).view(TIME_MS, 1, 1, 28, 28)}
        network.run(inputs=inputs, time=TIME_MS, input_time_dim=1)
        if "exc_voltage" in mons:
            mons["exc_voltage"].get("v")
            mons["inh_voltage"].get("v")
        spikes = mons["Ae_spikes"].get("s").squeeze()
        spike_record[(step0 + i) % UPDATE_INTERVAL] = spikes
        counts.append(int(spikes.sum()))
        network.reset_state_variables()
    return counts


def write_json(path: Path, result: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with MNIST idx files")
    parser.add_argument("--neurons", type=int, default=100)
    parser.add_argument("--images", type=int, default=200, help="timed images")
    parser.add_argument("--warmup", type=int, default=3, help="untimed images first")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads; default: leave torch's default")
    parser.add_argument("--monitors", choices=("eth_mnist", "minimal"), default="eth_mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    all_images = read_train_images(args.data)
    order = np.random.default_rng(args.seed).permutation(len(all_images))
    images = all_images[order[: args.warmup + args.images]]

    network, mons = build(args.neurons, args.monitors)
    encoder = PoissonEncoder(time=TIME_MS, dt=DT_MS)
    spike_record = torch.zeros(UPDATE_INTERVAL, TIME_MS, args.neurons)

    train_images(network, mons, encoder, images[: args.warmup], spike_record, 0)
    start = time.perf_counter()
    counts = train_images(network, mons, encoder, images[args.warmup:], spike_record,
                          args.warmup)
    seconds = time.perf_counter() - start

    result = {
        "benchmark": "bindsnet DiehlAndCook2015, eth_mnist.py training loop, CPU",
        "neurons": args.neurons,
        "images": args.images,
        "warmup_images": args.warmup,
        "seconds": seconds,
        "images_per_s": args.images / seconds,
        "exc_spikes_per_image_mean": float(np.mean(counts)),
        "images_under_5_exc_spikes": int(sum(c < 5 for c in counts)),
        "monitors": args.monitors,
        "settings": {"exc": EXC, "inh": INH, "theta_plus": THETA_PLUS, "time_ms": TIME_MS,
                     "dt_ms": DT_MS, "intensity_hz": INTENSITY, "norm": NORM,
                     "re_presentation": False},
        "threads_requested": args.threads,
        "torch_num_threads": torch.get_num_threads(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "bindsnet_version": importlib.metadata.version("bindsnet"),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "seed": args.seed,
    }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
