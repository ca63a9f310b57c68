"""A drop-in `snn.Leaky` running on this project's own maths (`lif_core.leaky`).

A user who wants a second opinion on an snnTorch script changes one import,

    import snntorch as snn              ->   from lif_core import compat as snn
    from snntorch import surrogate      ->   from lif_core.compat import surrogate

and runs it again: the same constructor arguments and call conventions as snnTorch
1.0.0's `Leaky` (`(input_, mem) -> (spk, mem)`, `init_leaky()` / `reset_mem()`,
`init_hidden=True` returning `spk`, or `(spk, mem)` with `output=True`), the same
state_dict entries (`beta`, `threshold`, `graded_spikes_factor`, `reset_mechanism_val`),
`learn_beta` / `learn_threshold` / `learn_graded_spikes_factor` as parameters,
`surrogate_disable` (the plain step, no graph through the spike), and the
`reset_mechanism` property that keeps `reset_mechanism_val` in step.  snnTorch's own
surrogate functions (`snntorch.surrogate.atan(...)`, `fast_sigmoid(...)`, `sigmoid(...)`)
are accepted too: their shape parameter is read from the function, so even the surrogate
import may stay.

`Leaky` here is `lif_core.modules.Leaky` -- the same buffers, the same state_dict rules (a
`reset_mechanism_val` other than the constructor's is refused on load, where snnTorch 1.0.0
would silently keep computing its constructor's reset) -- seen step by step: each call is
one `lif_core.leaky.leaky_step`, snnTorch's operations in snnTorch's order, so spikes and
membranes are bit-identical, with autograd through our own surrogate Functions.  It builds
and runs under `torch.compile(fullgraph=True)`.  Arguments we do not implement (`inhibition`,
`state_quant`, surrogates other than atan, fast sigmoid and sigmoid) raise a one-line
ValueError naming them: nothing is silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from lif_core import modules
from lif_core.leaky import leaky_step
from lif_core.surrogate import ArcTan, FastSigmoid, Sigmoid, Surrogate, SurrogateDisabled

# snnTorch 1.0.0's surrogate factories, by the qualified name of the function they return
_SNNTORCH_SURROGATES: dict[str, tuple[str, Callable[[float], Surrogate]]] = {
    "atan.<locals>.inner": ("alpha", ArcTan),
    "fast_sigmoid.<locals>.inner": ("slope", FastSigmoid),
    "sigmoid.<locals>.inner": ("slope", Sigmoid),
}

# `from lif_core.compat import surrogate`: the factories under snnTorch's names
surrogate = SimpleNamespace(
    atan=lambda alpha=2.0: ArcTan(float(alpha)),
    fast_sigmoid=lambda slope=25: FastSigmoid(float(slope)),
    sigmoid=lambda slope=25: Sigmoid(float(slope)),
)


def as_surrogate(spike_grad: Any) -> Surrogate:
    """Our surrogate object for `spike_grad`: None (snnTorch's default, atan with alpha 2),
    one of ours, or a function made by snnTorch's `surrogate.atan/fast_sigmoid/sigmoid`."""
    if spike_grad is None:
        return ArcTan()
    if isinstance(spike_grad, (ArcTan, FastSigmoid, Sigmoid)):
        return spike_grad
    known = _SNNTORCH_SURROGATES.get(getattr(spike_grad, "__qualname__", ""))
    if known is not None and getattr(spike_grad, "__module__", "") == "snntorch.surrogate":
        name, build = known
        cells = dict(zip(spike_grad.__code__.co_freevars, spike_grad.__closure__ or ()))
        if name in cells:
            return build(float(cells[name].cell_contents))
    raise ValueError(
        f"spike_grad {spike_grad!r} is not supported: use surrogate.atan, surrogate.fast_sigmoid "
        "or surrogate.sigmoid (snnTorch's or lif_core.compat's)"
    )


class Leaky(modules.Leaky):
    """snnTorch 1.0.0's `Leaky`, computed by `lif_core.leaky`; see the module docstring."""

    def __init__(
        self,
        beta: float | Tensor,
        threshold: float | Tensor = 1.0,
        spike_grad: Any = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        state_quant: Any = False,
        output: bool = False,
        graded_spikes_factor: float | Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
        reset_delay: bool = True,
    ) -> None:
        unsupported = {"inhibition=True": bool(inhibition), "state_quant": state_quant not in (False, None)}
        for option, given in unsupported.items():
            if given:
                raise ValueError(
                    f"snn.Leaky option {option} is not supported by lif_core.compat; supported: every other "
                    "argument, with spike_grad atan, fast_sigmoid or sigmoid"
                )
        super().__init__(
            beta,
            threshold,
            SurrogateDisabled() if surrogate_disable else as_surrogate(spike_grad),
            reset_mechanism=reset_mechanism,  # type: ignore[arg-type]  # validated by LeakyOptions
            reset_delay=reset_delay,
            graded_spikes_factor=graded_spikes_factor,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            learn_graded_spikes_factor=learn_graded_spikes_factor,
        )
        self.surrogate_disable = surrogate_disable
        self.init_hidden, self.output, self.reset_delay = init_hidden, output, reset_delay
        self.register_buffer("mem", torch.zeros(0), persistent=False)  # snnTorch's: not saved

    def reset_mem(self) -> Tensor:
        """Zero the hidden membrane (snnTorch's `reset_mem`); returns it."""
        self.mem = torch.zeros_like(self.mem)
        return self.mem

    def init_leaky(self) -> Tensor:
        """snnTorch's deprecated alias of `reset_mem`."""
        return self.reset_mem()

    def forward(self, input_: Tensor, mem: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:  # type: ignore[override]
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if mem is not None:
            self.mem = mem
        if self.mem.shape != input_.shape:
            # a fresh (or mis-shaped) state starts at zero, as snnTorch does
            self.mem = torch.zeros_like(input_)
        spikes, self.mem = leaky_step(
            input_, self.mem, self.beta, self.threshold, self.options, self.graded_spikes_factor
        )
        if self.output or not self.init_hidden:
            return spikes, self.mem
        return spikes


def _reset(net: nn.Module) -> nn.Module:
    """Zero the hidden membrane of every `Leaky` in `net` (snnTorch's `utils.reset`)."""
    for module in net.modules():
        if isinstance(module, Leaky):
            module.reset_mem()
    return net


# `from lif_core.compat import utils`: `utils.reset(net)`, as snnTorch's
utils = SimpleNamespace(reset=_reset)
