"""snnTorch's training step, timed in a plain script that imports nothing of this project:
the cross-check for `snn-mnist bench`'s snnTorch figures.

    python benchmarks/snntorch_alone.py MNIST_DIR [--threads 2] [--steps 20]
                                        [--network study|tutorial5|rate|three] [--compile]

MNIST_DIR holds train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz).  The
networks are the bench's four (`benchmarks.harness.NETWORKS`), written here again as a
snnTorch user writes them:

    study      784-512-10, beta 0.9, subtract reset, fast sigmoid 25, the image as a
               constant current, CE on output spike counts + 1e-4 x mean hidden count
    tutorial5  784-1000-10, beta 0.95, subtract reset, atan (alpha 2), constant current,
               tutorial 5's loss: sum over steps of CE on the output membranes
    rate       784-1000-10, learnable beta 0.95, zero reset, atan, spikegen.rate input,
               the membrane loss
    three      784-256-128-10, a learnable beta per neuron (0.9) in every layer, subtract
               reset, fast sigmoid 25, CE on output spike counts

Without --compile the loop is the tutorials' (fc1 inside the time loop): the bench's
"snntorch".  With --compile it is the bench's "snntorch_compiled": fc1 computed once over
its whole input (the constant current, or all T steps of rate-coded spikes), the module
wrapped in `torch.compile(model)` (default mode); loss, backward and optimiser eager.
One step: forward, loss, backward, Adam 1e-3, weight clip to [-1, 1]; batches of 128
consecutive training images.  Prints the median ms of `--steps` steps after 3 warm-up
steps, and the warm-up steps' time above 3 x that median (the compilation, with
--compile).  Run it on an otherwise idle machine.
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
from snntorch import spikegen, surrogate
from torch import nn

WARMUP = 3

# name -> layers, beta, learn beta, per-neuron beta, reset, surrogate, rate input, loss, activity penalty
NETWORKS = {
    "study": ((784, 512, 10), 0.9, False, False, "subtract", "fast_sigmoid", False, "count", 1e-4),
    "tutorial5": ((784, 1000, 10), 0.95, False, False, "subtract", "atan", False, "membrane", 0.0),
    "rate": ((784, 1000, 10), 0.95, True, False, "zero", "atan", True, "membrane", 0.0),
    "three": ((784, 256, 128, 10), 0.9, True, True, "subtract", "fast_sigmoid", False, "count", 0.0),
}


def read_idx(folder: Path, stem: str, offset: int) -> np.ndarray:
    path = next(p for p in (folder / stem, folder / f"{stem}.gz") if p.exists())
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return np.frombuffer(data, dtype=np.uint8, offset=offset)


class Net(nn.Module):
    """fc1, lif1, fc2, lif2, ...: Linear and snn.Leaky layers, stepped through T steps."""

    def __init__(self, network: str, hoisted: bool, steps: int = 25) -> None:
        super().__init__()
        layers, beta, learn_beta, per_neuron, reset, spike_grad, rate, loss, penalty = NETWORKS[network]
        self.steps, self.hoisted, self.rate = steps, hoisted, rate
        self.membrane_loss, self.penalty = loss == "membrane", penalty
        self.num_layers = len(layers) - 1
        for k in range(1, len(layers)):
            grad = surrogate.atan() if spike_grad == "atan" else surrogate.fast_sigmoid(slope=25)
            value = torch.full((layers[k],), beta) if per_neuron else torch.tensor(beta)
            setattr(self, f"fc{k}", nn.Linear(layers[k - 1], layers[k]))
            setattr(self, f"lif{k}", snn.Leaky(beta=value, learn_beta=learn_beta, reset_mechanism=reset, spike_grad=grad))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Spike counts of the layers the loss reads, and the output membranes (T, B, 10) for the membrane loss."""
        fcs = [getattr(self, f"fc{k}") for k in range(1, self.num_layers + 1)]
        lifs = [getattr(self, f"lif{k}") for k in range(1, self.num_layers + 1)]
        mems = [lif.init_leaky() for lif in lifs]
        spk_rec: list[list[torch.Tensor]] = [[] for _ in lifs]
        mem_rec = []
        first = fcs[0](x) if self.hoisted else None
        for step in range(self.steps):
            signal = x[step] if self.rate else x
            for layer, (fc, lif) in enumerate(zip(fcs, lifs)):
                if first is not None and layer == 0:
                    current = first[step] if self.rate else first
                else:
                    current = fc(signal)
                signal, mems[layer] = lif(current, mems[layer])
                if layer == self.num_layers - 1 or self.penalty:
                    spk_rec[layer].append(signal)
            if self.membrane_loss:
                mem_rec.append(mems[-1])
        counts = [torch.stack(spikes).sum(0) for spikes in spk_rec if spikes]
        return counts, torch.stack(mem_rec) if mem_rec else None

    def loss(self, counts: list[torch.Tensor], mem_rec: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
        if mem_rec is not None:  # tutorial 5: loss_val += CE(mem_rec[step], y)
            loss = torch.zeros((1), dtype=torch.float32)
            for step in range(self.steps):
                loss += F.cross_entropy(mem_rec[step], y)
            loss = loss[0]
        else:
            loss = F.cross_entropy(counts[-1], y)
        if self.penalty:
            loss = loss + self.penalty * torch.cat(counts[:-1], dim=-1).mean()
        return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mnist_dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--network", choices=tuple(NETWORKS), default="study")
    parser.add_argument("--compile", action="store_true", help="fc1 hoisted, the module under torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = torch.from_numpy(read_idx(args.mnist_dir, "train-images-idx3-ubyte", 16).reshape(-1, 784).astype(np.float32) / 255)
    labels = torch.from_numpy(read_idx(args.mnist_dir, "train-labels-idx1-ubyte", 8).astype(np.int64))
    torch.manual_seed(0)
    model = Net(args.network, hoisted=args.compile)
    run = torch.compile(model) if args.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    samples = []
    for step in range(WARMUP + args.steps):
        x, y = images[step * 128 : (step + 1) * 128], labels[step * 128 : (step + 1) * 128]
        start = time.perf_counter()
        if model.rate:
            x = spikegen.rate(x, num_steps=model.steps)
        loss = model.loss(*run(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for linear in linears:
                linear.weight.clamp_(-1, 1)
        samples.append(time.perf_counter() - start)
    median = statistics.median(samples[WARMUP:])
    form = "fc1 hoisted, torch.compile" if args.compile else "as the tutorials write it"
    print(
        f"snnTorch alone, {args.network} ({form}): train step {median * 1e3:.2f} ms "
        f"(median of {args.steps}, {args.threads} threads); warm-up above steady "
        f"{max(0.0, sum(samples[:WARMUP]) - WARMUP * median):.1f} s"
    )


if __name__ == "__main__":
    main()
