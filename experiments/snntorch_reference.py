"""The study's network written with snnTorch, as the study writes it: the reference.

snnTorch is a test-only dependency (`pip install -e ".[test]"`); this module is
imported only by `snn-mnist crosscheck`, `snn-mnist bench` and the tests, never
by the library.  The per-step loop below is the study's, including fc1(x)
recomputed at every step; the one addition is that hidden spikes are recorded
too, since the study's loss penalises them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from experiments.snntorch_network import MISSING_SNNTORCH
from training.errors import SnnMnistError
from training.model import INPUT_SIZE, NUM_CLASSES

try:
    import snntorch as snn
    from snntorch import surrogate as snn_surrogate
except ImportError as error:  # pragma: no cover - exercised only without the test extra
    raise SnnMnistError(MISSING_SNNTORCH) from error


def snntorch_surrogate(name: str, scale: float | None = None) -> Any:
    """snnTorch's surrogate matching our `make_surrogate(name, scale)`."""
    if name == "fast_sigmoid":
        return snn_surrogate.fast_sigmoid(slope=25 if scale is None else scale)
    if name == "atan":
        return snn_surrogate.atan(alpha=2.0 if scale is None else scale)
    raise ValueError(f"unknown surrogate {name!r}: choose fast_sigmoid or atan")


class StudySNN(nn.Module):
    """The study's SupervisedSNN (snnTorch), with hidden spikes recorded as well."""

    def __init__(self, beta: float = 0.9, hidden_size: int = 512, spike_grad: Any = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(INPUT_SIZE, hidden_size)
        self.lif1 = snn.Leaky(beta=beta, spike_grad=spike_grad)
        self.fc2 = nn.Linear(hidden_size, NUM_CLASSES)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=spike_grad)

    def record(self, x: Tensor, num_steps: int = 25) -> dict[str, Tensor]:
        """The same loop, returning spk1, mem1, spk2, mem2, each stacked to (T, B, N)."""
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        record: dict[str, list[Tensor]] = {"spk1": [], "mem1": [], "spk2": [], "mem2": []}
        for _step in range(num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            for key, value in (("spk1", spk1), ("mem1", mem1), ("spk2", spk2), ("mem2", mem2)):
                record[key].append(value)
        return {key: torch.stack(values, dim=0) for key, values in record.items()}

    def forward(self, x: Tensor, num_steps: int = 25) -> tuple[Tensor, Tensor]:
        """Returns (output spikes (T, B, 10), hidden spikes (T, B, H))."""
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, spk1_rec = [], []
        for step in range(num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            spk1_rec.append(spk1)
        return torch.stack(spk2_rec, dim=0), torch.stack(spk1_rec, dim=0)


def run_leaky(
    current: Tensor,
    beta: float,
    threshold: float,
    spike_grad: Any,
    num_steps: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Run `snn.Leaky(beta, threshold, spike_grad)` over (T, B, N), or (B, N) held for
    `num_steps` steps; returns (spikes, membranes), each (T, B, N)."""
    layer = snn.Leaky(beta=beta, threshold=threshold, spike_grad=spike_grad)
    steps = current.shape[0] if num_steps is None else num_steps
    mem = layer.init_leaky()
    spikes, membranes = [], []
    for t in range(steps):
        spk, mem = layer(current if num_steps is not None else current[t], mem)
        spikes.append(spk)
        membranes.append(mem)
    return torch.stack(spikes), torch.stack(membranes)


def build_study_model(
    hidden_size: int = 512, beta: float = 0.9, surrogate: str = "fast_sigmoid", scale: float | None = None
) -> StudySNN:
    return StudySNN(beta=beta, hidden_size=hidden_size, spike_grad=snntorch_surrogate(surrogate, scale))


def study_loss(model: StudySNN, images: Tensor, labels: Tensor, alpha_reg: float, num_steps: int = 25) -> tuple[Tensor, Tensor]:
    """The study's loss on the snnTorch model: CE(sum_t S2_t, y) + alpha_reg * mean_{b,n} sum_t S1_t.
    Returns (loss, output spike counts)."""
    output_spikes, hidden_spikes = model(images.reshape(images.shape[0], -1), num_steps)
    counts = output_spikes.sum(dim=0)
    loss = nn.functional.cross_entropy(counts, labels) + alpha_reg * hidden_spikes.sum(dim=0).mean()
    return loss, counts
