"""Thin `nn.Module` wrappers around the functional LIF core.

`LIF` holds beta and threshold as 0-dim float32 buffers under the same names,
shapes and dtypes as snnTorch 1.0.0's `snn.Leaky` (`threshold`,
`graded_spikes_factor`, `reset_mechanism_val`, `beta`), so a state_dict moves
between the two with `load_state_dict(strict=True)`.  The buffers are the
source of truth: loading a checkpoint with another beta or threshold changes
what the layer computes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lif_core.neuron import LIFParameters
from lif_core.sequence import BACKENDS, Backend, LIFSequenceOutput, lif_sequence
from lif_core.surrogate import FastSigmoid, Surrogate

SUBTRACT_RESET = 0  # snnTorch's reset_mechanism_val for "subtract"


class LIF(nn.Module):
    """A population of LIF neurons run over a whole sequence (see `lif_core.sequence`).

    forward(current, num_steps=None) takes (T, B, N), or (B, N) with num_steps for
    a constant input, and returns LIFSequenceOutput(spikes, membranes), (T, B, N).
    """

    def __init__(
        self,
        beta: float = 0.9,
        threshold: float = 1.0,
        surrogate: Surrogate | None = None,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        LIFParameters(beta=beta, threshold=threshold)  # validates the numbers
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.surrogate: Surrogate = surrogate if surrogate is not None else FastSigmoid()
        self.backend: Backend = backend
        # Same buffers, same order, as snn.Leaky's state_dict.
        self.register_buffer("threshold", torch.as_tensor(float(threshold), dtype=torch.float32))
        self.register_buffer("graded_spikes_factor", torch.as_tensor(1.0, dtype=torch.float32))
        self.register_buffer("reset_mechanism_val", torch.as_tensor(SUBTRACT_RESET, dtype=torch.int64))
        self.register_buffer("beta", torch.as_tensor(float(beta), dtype=torch.float32))

    @property
    def params(self) -> LIFParameters:
        """The layer's constants as a `LIFParameters` record, read from the buffers."""
        if int(self.reset_mechanism_val) != SUBTRACT_RESET or float(self.graded_spikes_factor) != 1.0:
            raise ValueError(
                "only snnTorch's defaults are implemented: reset_mechanism_val=0 (subtract) and "
                f"graded_spikes_factor=1, but this layer holds {int(self.reset_mechanism_val)} and "
                f"{float(self.graded_spikes_factor):g} (from a loaded state_dict?). Fix: re-train or "
                'save the snnTorch model with reset_mechanism="subtract" and graded_spikes_factor=1'
            )
        return LIFParameters(
            beta=float(self.beta), threshold=float(self.threshold), surrogate=self.surrogate
        )

    def forward(
        self, current: Tensor, num_steps: int | None = None, return_membranes: bool = True
    ) -> LIFSequenceOutput:
        return lif_sequence(
            current,
            self.params,
            num_steps=num_steps,
            backend=self.backend,
            return_membranes=return_membranes,
        )

    def extra_repr(self) -> str:
        return (
            f"beta={float(self.beta):g}, threshold={float(self.threshold):g}, "
            f"surrogate={self.surrogate}, backend={self.backend!r}"
        )
