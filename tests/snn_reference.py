"""snnTorch 1.0.0 references for the parity tests (snnTorch is a test-only dependency).

`StudySNN` is the study's network written exactly as the study writes it, with
the hidden and output states recorded as well; `run_leaky` runs one `snn.Leaky`
layer step by step over a current sequence.
"""

from __future__ import annotations

from collections.abc import Callable

import snntorch as snn
import torch
from snntorch import surrogate
from torch import Tensor, nn

SpikeGrad = Callable[[Tensor], Tensor]


def snntorch_surrogate(name: str, scale: float) -> SpikeGrad:
    """snnTorch's surrogate with the given name ("fast_sigmoid" or "atan") and slope/alpha."""
    if name == "fast_sigmoid":
        return surrogate.fast_sigmoid(slope=scale)
    if name == "atan":
        return surrogate.atan(alpha=scale)
    raise ValueError(f"no snnTorch surrogate for {name!r}")


class StudySNN(nn.Module):
    """The study's snnTorch network: fc1 -> Leaky -> fc2 -> Leaky, fc1(x) recomputed every step."""

    def __init__(
        self, beta: float = 0.9, hidden_size: int = 512, spike_grad: SpikeGrad | None = None
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, hidden_size)
        self.lif1 = snn.Leaky(beta=beta, spike_grad=spike_grad)
        self.fc2 = nn.Linear(hidden_size, 10)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=spike_grad)

    def forward(self, x: Tensor, num_steps: int = 25) -> dict[str, Tensor]:
        """Returns spk1, mem1, spk2, mem2, each stacked over time to (T, B, N)."""
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        record: dict[str, list[Tensor]] = {"spk1": [], "mem1": [], "spk2": [], "mem2": []}
        for _step in range(num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            record["spk1"].append(spk1)
            record["mem1"].append(mem1)
            record["spk2"].append(spk2)
            record["mem2"].append(mem2)
        return {key: torch.stack(values, dim=0) for key, values in record.items()}


def run_leaky(
    current: Tensor,
    beta: float,
    threshold: float,
    spike_grad: SpikeGrad | None,
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
