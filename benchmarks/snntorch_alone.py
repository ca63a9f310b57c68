"""The study's snnTorch training step, timed in a plain script that imports nothing of
this project: the cross-check for `snn-mnist bench`'s snnTorch figure.

    python benchmarks/snntorch_alone.py MNIST_DIR [--threads 2] [--steps 20]

MNIST_DIR holds train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz).  The
network, loss and optimiser are the study's as its code writes them (fc1 inside the
time loop, `snn.Leaky` with the fast sigmoid, Adam 1e-3, weight clip); batches of 128
consecutive training images.  Prints the median ms of `--steps` steps after 3 warm-up
steps.  Run it on an otherwise idle machine.
"""

import argparse
import gzip
import statistics
import time
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import surrogate
from torch import nn


def read_idx(folder: Path, stem: str, offset: int) -> np.ndarray:
    path = next(p for p in (folder / stem, folder / f"{stem}.gz") if p.exists())
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return np.frombuffer(data, dtype=np.uint8, offset=offset)


class Net(nn.Module):
    def __init__(self, steps: int = 25) -> None:
        super().__init__()
        self.steps = steps
        self.fc1 = nn.Linear(784, 512)
        self.lif1 = snn.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid(slope=25))
        self.fc2 = nn.Linear(512, 10)
        self.lif2 = snn.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid(slope=25))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk1_rec, spk2_rec = [], []
        for _ in range(self.steps):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk1_rec.append(spk1)
            spk2_rec.append(spk2)
        return torch.stack(spk2_rec).sum(0), torch.stack(spk1_rec).sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mnist_dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = torch.from_numpy(read_idx(args.mnist_dir, "train-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255)
    labels = torch.from_numpy(read_idx(args.mnist_dir, "train-labels-idx1-ubyte", 8).astype(np.int64))
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    samples = []
    for step in range(3 + args.steps):
        x, y = images[step * 128 : (step + 1) * 128], labels[step * 128 : (step + 1) * 128]
        start = time.perf_counter()
        output_counts, hidden_counts = model(x)
        loss = F.cross_entropy(output_counts, y) + 1e-4 * hidden_counts.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.fc1.weight.clamp_(-1, 1)
            model.fc2.weight.clamp_(-1, 1)
        if step >= 3:
            samples.append(time.perf_counter() - start)
    print(f"snnTorch alone: train step {statistics.median(samples) * 1e3:.2f} ms (median of {args.steps}, {args.threads} threads)")


if __name__ == "__main__":
    main()
