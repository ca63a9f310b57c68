"""`Leaky`: the neuron as an `nn.Module`, run over a whole sequence.

A thin wrapper around `lif_core.leaky.leaky_sequence`.  It holds snnTorch 1.0.0's
`snn.Leaky` state_dict entries under the same names, shapes, dtypes and order --
`threshold`, `graded_spikes_factor`, `reset_mechanism_val`, `beta` -- each a buffer, or a
Parameter when learnt, so a state_dict moves between the two with
`load_state_dict(strict=True)`, both ways.  The values (beta, threshold, graded factor) are
read from those tensors at every call, so loading a state_dict with other values changes
what the layer computes, as in snnTorch.  The reset mechanism is the module's option; a
state_dict whose `reset_mechanism_val` names another one is refused when it is loaded
(snnTorch 1.0.0 would load it and keep computing its constructor's reset), and setting
`reset_mechanism` updates both, as snnTorch's property does.

`lif_core.compat.Leaky` is the same module seen step by step: snnTorch's constructor and
`(input_, mem) -> (spk, mem)` calls.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lif_core.backend import Backend, check_backend
from lif_core.leaky import ParameterLike, check_graded, default_parameters, leaky_sequence
from lif_core.neuron import RESET_MECHANISMS, LeakyOptions, LeakySequenceOutput, LIFParameters, ResetMechanism
from lif_core.surrogate import ArcTan, Surrogate


def as_value_tensor(value: ParameterLike | tuple[float, ...] | list[float], name: str) -> Tensor:
    """A value as snnTorch stores it: `torch.as_tensor` (a Python float becomes a 0-dim
    float32 tensor, a list a float32 (N,) one); a tensor is copied, detached.  Non-finite
    values are refused (one line naming the value)."""
    try:
        tensor = value.detach().clone() if isinstance(value, Tensor) else torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} must be a number, a list of numbers or a tensor, got {value!r}") from error
    if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must hold finite floating-point numbers, got {value!r}")
    return tensor


class Leaky(nn.Module):
    """A population of snn.Leaky neurons over a whole sequence (see `leaky_sequence`).

    forward(current, num_steps=None, membrane=None, record_membranes=True) takes (T, ..., N),
    or one step (..., N) held for num_steps steps, and returns
    LeakySequenceOutput(spikes, membranes, counts)."""

    def __init__(
        self,
        beta: ParameterLike | tuple[float, ...] = 0.9,
        threshold: ParameterLike | tuple[float, ...] = 1.0,
        surrogate: Surrogate | None = None,
        *,
        reset_mechanism: ResetMechanism = "subtract",
        reset_delay: bool = True,
        graded_spikes_factor: ParameterLike = 1.0,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        learn_graded_spikes_factor: bool = False,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        self.options = LeakyOptions(reset_mechanism, reset_delay, surrogate if surrogate is not None else ArcTan())
        self.backend: Backend = check_backend(backend)
        # snnTorch's registration order: threshold, graded_spikes_factor, reset_mechanism_val, beta
        graded = as_value_tensor(graded_spikes_factor, "graded_spikes_factor")
        check_graded(graded)
        if float(graded) == 0:
            raise ValueError("graded_spikes_factor must be non-zero (the same-step reset divides by it), got 0")
        self._value("threshold", as_value_tensor(threshold, "threshold"), learn_threshold)
        self._value("graded_spikes_factor", graded, learn_graded_spikes_factor)
        self.register_buffer("reset_mechanism_val", torch.as_tensor(self.options.reset_code))
        self._value("beta", as_value_tensor(beta, "beta"), learn_beta)

    def _value(self, name: str, value: Tensor, learnt: bool) -> None:
        if learnt:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    @property
    def surrogate(self) -> Surrogate:
        return self.options.surrogate

    @property
    def reset_mechanism(self) -> ResetMechanism:
        return self.options.reset_mechanism

    @reset_mechanism.setter
    def reset_mechanism(self, name: ResetMechanism) -> None:
        # a new LeakyOptions validates the name; the buffer follows, as snnTorch's property does
        self.options = LeakyOptions(name, self.options.reset_delay, self.options.surrogate)
        self.reset_mechanism_val = torch.as_tensor(self.options.reset_code)

    def default_parameters(self, dtype: torch.dtype = torch.float32) -> LIFParameters | None:
        """This layer as `LIFParameters` when the specialised kernels compute it for `dtype`
        input (snn.Leaky's default options, g = 1, fixed scalar values), else None."""
        return default_parameters(self.beta, self.threshold, self.graded_spikes_factor, self.options, dtype)

    def forward(
        self,
        current: Tensor,
        num_steps: int | None = None,
        membrane: Tensor | None = None,
        record_membranes: bool = True,
    ) -> LeakySequenceOutput:
        return leaky_sequence(
            current,
            self.beta,
            self.threshold,
            self.options,
            num_steps,
            membrane,
            self.backend,
            graded_spikes_factor=self.graded_spikes_factor,
            record_membranes=record_membranes,
        )

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load as usual; a reset_mechanism_val other than this module's reset is an error of
        load_state_dict (in its list of problems), naming both."""
        super()._load_from_state_dict(state_dict, prefix, *args)
        error_msgs: list[str] = args[-1]
        loaded = int(self.reset_mechanism_val)
        if loaded != self.options.reset_code:
            name = RESET_MECHANISMS[loaded] if 0 <= loaded < len(RESET_MECHANISMS) else "unknown"
            error_msgs.append(
                f"{prefix}reset_mechanism_val is {loaded} ({name!r}), but this Leaky was built with "
                f"reset_mechanism={self.options.reset_mechanism!r} (snnTorch 1.0.0 would keep computing "
                f"{self.options.reset_mechanism!r}); build it with the checkpoint's reset_mechanism"
            )
            self.reset_mechanism_val = torch.as_tensor(self.options.reset_code)

    def extra_repr(self) -> str:
        learnt = [name for name, _ in self.named_parameters(recurse=False)]
        return (
            f"beta={_shown(self.beta)}, threshold={_shown(self.threshold)}, "
            f"graded_spikes_factor={_shown(self.graded_spikes_factor)}, reset_mechanism={self.reset_mechanism!r}, "
            f"reset_delay={self.options.reset_delay}, surrogate={self.surrogate}, backend={self.backend!r}"
            + (f", learnt={'+'.join(learnt)}" if learnt else "")
        )


def _shown(value: Tensor) -> str:
    return f"{float(value):g}" if value.numel() == 1 else f"per-neuron ({value.numel()})"
