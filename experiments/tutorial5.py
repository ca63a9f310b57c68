"""snnTorch's tutorial 5 side by side: its network trained by snnTorch and by our maths.

    python -m experiments.tutorial5 [--data-dir DIR] [--threads 2] [--seed 0] [--json out.json]

Tutorial 5 ("Training Spiking Neural Networks with snnTorch") trains a 784-1000-10
network of `snn.Leaky(beta=0.95)` (default atan surrogate, subtract reset) for 25
steps on the static image as direct input, with Adam (lr 5e-4, betas 0.9/0.999),
batches of 128 shuffled with drop_last, and the loss `sum_t CE(mem2_t, y)` on the
output membrane at every step; one epoch, then test accuracy by output spike counts.
It reports 93.87%.

Here the same script runs twice from the same initial weights and the same batch
order: once with `import snntorch as snn`, once with the import swapped for
`lif_core.compat` (our LIF maths, `lif_core.leaky`).  Reported: both test
accuracies, how far the per-batch losses drift apart, and wall times.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from torch import Tensor, nn

from lif_core import compat
from training.data import load_mnist

INPUTS, HIDDEN, OUTPUTS = 784, 1000, 10
BETA, STEPS, BATCH, LEARNING_RATE = 0.95, 25, 128, 5e-4


def tutorial_net(snn_module: Any) -> nn.Module:
    """Tutorial 5's `Net`, written as the tutorial writes it, for whichever `snn` is given."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(INPUTS, HIDDEN)
            self.lif1 = snn_module.Leaky(beta=BETA)
            self.fc2 = nn.Linear(HIDDEN, OUTPUTS)
            self.lif2 = snn_module.Leaky(beta=BETA)

        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            mem1 = self.lif1.init_leaky()
            mem2 = self.lif2.init_leaky()
            spk2_rec, mem2_rec = [], []
            for _ in range(STEPS):
                cur1 = self.fc1(x)
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = self.fc2(spk1)
                spk2, mem2 = self.lif2(cur2, mem2)
                spk2_rec.append(spk2)
                mem2_rec.append(mem2)
            return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)

    return Net()


def train_one_epoch(net: nn.Module, images: Tensor, labels: Tensor, order: Tensor) -> list[float]:
    """One epoch of tutorial 5's loop over `order` (drop_last); returns the loss of each batch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.999))
    criterion = nn.CrossEntropyLoss()
    losses = []
    for start in range(0, len(order) - BATCH + 1, BATCH):
        index = order[start : start + BATCH]
        _, mem_rec = net(images[index])
        # L = sum_t CE(mem2_t, y)
        loss = torch.zeros((), dtype=torch.float32)
        for step in range(STEPS):
            loss += criterion(mem_rec[step], labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def test_accuracy(net: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Percent of test images whose output spike count is largest for the true class."""
    correct = 0
    for start in range(0, len(labels), 1000):
        spikes, _ = net(images[start : start + 1000])
        correct += int((spikes.sum(dim=0).argmax(dim=1) == labels[start : start + 1000]).sum())
    return 100.0 * correct / len(labels)


def run(data_dir: str | None, seed: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    import snntorch

    train, test = load_mnist("train", data_dir), load_mnist("test", data_dir)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    theirs = tutorial_net(snntorch)
    ours = tutorial_net(compat)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # the same initial weights
    results: dict[str, Any] = {"seed": seed, "threads": threads, "tutorial_reports_pct": 93.87}
    losses = {}
    for name, net in (("snntorch", theirs), ("ours", ours)):
        started = time.perf_counter()
        losses[name] = train_one_epoch(net, train.flat_images, train.labels, order)
        trained = time.perf_counter() - started
        results[name] = {
            "test_accuracy_pct": test_accuracy(net, test.flat_images, test.labels),
            "train_seconds": trained,
            "first_loss": losses[name][0],
            "last_loss": losses[name][-1],
        }
    drift = [abs(a - b) / abs(b) for a, b in zip(losses["ours"], losses["snntorch"])]
    results["batches"] = len(drift)
    results["first_batch_losses_equal"] = losses["ours"][0] == losses["snntorch"][0]
    results["batches_with_equal_loss"] = sum(a == b for a, b in zip(losses["ours"], losses["snntorch"]))
    results["max_relative_loss_difference"] = max(drift)
    results["accuracy_difference_points"] = (
        results["ours"]["test_accuracy_pct"] - results["snntorch"]["test_accuracy_pct"]
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = run(args.data_dir, args.seed, args.threads)
    for name in ("snntorch", "ours"):
        entry = results[name]
        print(f"{name:9s} test accuracy {entry['test_accuracy_pct']:.2f}%  (one epoch, {entry['train_seconds']:.0f} s)")
    print(
        f"difference {results['accuracy_difference_points']:+.2f} points; equal loss in "
        f"{results['batches_with_equal_loss']} of {results['batches']} batches, largest relative "
        f"loss difference {results['max_relative_loss_difference']:.2e}; the tutorial reports 93.87%"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
