"""The study's supervised spiking network: 784 -> LIF(512) -> 10 LIF, 25 time steps.

    I1   = W1 x + b1                      computed once: the image is a constant current
    S1_t = LIF(I1)_t,  t = 0..T-1          hidden spikes, (T, B, H)
    I2_t = W2 S1_t + b2                    (T, B, 10)
    S2_t = LIF(I2_t)                       output spikes, (T, B, 10)
    prediction = argmax_k sum_t S2_t[k]    ties go to the lowest class, as torch.argmax

The module names and buffers (`fc1`, `lif1`, `fc2`, `lif2`) are those of the
study's snnTorch `SupervisedSNN`, so state_dicts load into either with
`strict=True`.  snnTorch recomputes fc1(x) at every step; the result is the
same tensor each time, so computing it once is exact, not an approximation.

Two compute paths, the same function:
  * exact (`fused=False`, and always off the CPU or with the torch backend):
    lif1, fc2 and lif2 as three autograd steps with (T, B, H) tensors between
    them; bit-identical to snnTorch, what `crosscheck` and the parity tests run;
  * fused (`fused=True`, the default on the CPU): lif1 -> fc2 -> lif2 as one
    Numba kernel per direction (`lif_core.fused`), the same sums in another
    order, several times faster.  `compute_path` says which one a model runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lif_core import LIF, make_surrogate
from lif_core.fused import fused_supported, lif_linear_lif
from lif_core.sequence import BACKENDS, resolve_backend

INPUT_SIZE = 28 * 28
NUM_CLASSES = 10


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and neuron constants; defaults are the study's."""

    hidden_size: int = 512
    beta: float = 0.9
    threshold: float = 1.0
    num_steps: int = 25
    surrogate: str = "fast_sigmoid"
    surrogate_scale: float | None = None  # slope 25 (fast_sigmoid) or alpha 2 (atan) when None
    backend: str = "auto"
    fused: bool = True  # the fused lif1 -> fc2 -> lif2 kernel where it applies (numba backend)

    def __post_init__(self) -> None:
        if not isinstance(self.hidden_size, int) or self.hidden_size < 1:
            raise ValueError(f"hidden size must be a positive integer, got {self.hidden_size!r}")
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"--steps must be a positive integer, got {self.num_steps!r}")
        if not (0.0 <= self.beta <= 1.0):
            raise ValueError(f"--beta must lie in [0, 1] (it is the membrane decay per step), got {self.beta!r}")
        if not (self.threshold > 0.0 and self.threshold < float("inf")):
            raise ValueError(f"--threshold must be a positive finite number, got {self.threshold!r}")
        if not isinstance(self.fused, bool):
            raise ValueError(f"fused must be True or False, got {self.fused!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        make_surrogate(self.surrogate, self.surrogate_scale)  # validates name and scale

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SNNOutput:
    """Everything a forward pass produces; (T, B, N) for sequences, (B, N) for counts.
    Membranes are None unless asked for (`record_membranes=True`).

    On the fused path the hidden spikes are computed when first read: the kernel
    keeps only their counts, and `lif_sequence` on the same current gives the same
    spikes, bit for bit (with a gradient, if the forward pass had one)."""

    def __init__(
        self,
        output_spikes: Tensor,
        output_counts: Tensor,
        hidden_counts: Tensor,
        hidden_spikes: Tensor | Callable[[], Tensor],
        output_membranes: Tensor | None = None,
        hidden_membranes: Tensor | None = None,
    ) -> None:
        self.output_spikes = output_spikes
        self.output_counts = output_counts
        self.hidden_counts = hidden_counts
        self.output_membranes = output_membranes
        self.hidden_membranes = hidden_membranes
        self._hidden_spikes = hidden_spikes

    @property
    def hidden_spikes(self) -> Tensor:
        if not isinstance(self._hidden_spikes, Tensor):
            self._hidden_spikes = self._hidden_spikes()
        return self._hidden_spikes


class SupervisedSNN(nn.Module):
    """Linear(784, H) -> LIF -> Linear(H, 10) -> LIF, the static image as constant current."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ModelConfig()
        surrogate = make_surrogate(self.config.surrogate, self.config.surrogate_scale)
        lif_options = dict(
            beta=self.config.beta,
            threshold=self.config.threshold,
            surrogate=surrogate,
            backend=self.config.backend,
        )
        # Same construction order as the study (fc1, lif1, fc2, lif2), so one torch
        # seed gives both implementations the same initial weights.
        self.fc1 = nn.Linear(INPUT_SIZE, self.config.hidden_size)
        self.lif1 = LIF(**lif_options)
        self.fc2 = nn.Linear(self.config.hidden_size, NUM_CLASSES)
        self.lif2 = LIF(**lif_options)

    @property
    def num_steps(self) -> int:
        return self.config.num_steps

    def compute_path(self, device: torch.device | None = None) -> str:
        """"fused" or "exact": the path `forward` takes on `device` (the weights' by default)."""
        device = device if device is not None else self.fc1.weight.device
        if not self.config.fused or resolve_backend(self.config.backend, device) != "numba":
            return "exact"
        probe = torch.empty((1, self.fc2.in_features), dtype=self.fc2.weight.dtype, device=device)
        return "fused" if fused_supported(probe, self.fc2.weight) is None else "exact"

    def forward(self, images: Tensor, record_membranes: bool = False) -> SNNOutput:
        """images: (B, 784) or (B, 1, 28, 28) in [0, 1].  Membranes are recorded on the
        exact path only: `record_membranes=True` takes it."""
        x = images.reshape(images.shape[0], -1)
        # I1 = W1 x + b1, held for T steps
        current = self.fc1(x)
        if not record_membranes and self.compute_path(current.device) == "fused":
            fused = lif_linear_lif(
                current, self.fc2.weight, self.fc2.bias, self.num_steps, self.lif1.params, self.lif2.params
            )
            grad_enabled = torch.is_grad_enabled()

            def hidden_spikes() -> Tensor:
                with torch.set_grad_enabled(grad_enabled):
                    return self.lif1(current, num_steps=self.num_steps, return_membranes=False).spikes

            return SNNOutput(
                output_spikes=fused.output_spikes,
                output_counts=fused.output_counts,
                hidden_counts=fused.hidden_counts,
                hidden_spikes=hidden_spikes,
            )
        hidden = self.lif1(current, num_steps=self.num_steps, return_membranes=record_membranes)
        # I2_t = W2 S1_t + b2
        output = self.lif2(self.fc2(hidden.spikes), return_membranes=record_membranes)
        return SNNOutput(
            output_spikes=output.spikes,
            output_counts=output.counts,
            output_membranes=output.membranes,
            hidden_spikes=hidden.spikes,
            hidden_counts=hidden.counts,
            hidden_membranes=hidden.membranes,
        )

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Class with the most output spikes; ties go to the lowest index."""
        return self(images).output_counts.argmax(dim=1)

    def clip_weights(self, bound: float = 1.0) -> None:
        """Clamp both layers' weights to [-bound, bound] in place (biases untouched)."""
        with torch.no_grad():
            self.fc1.weight.clamp_(-bound, bound)
            self.fc2.weight.clamp_(-bound, bound)
