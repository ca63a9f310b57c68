"""A drop-in `snn.Leaky` running on this project's own maths (`lif_core.leaky`).

A user who wants a second opinion on an snnTorch script changes one import,

    import snntorch as snn              ->   from lif_core import compat as snn
    from snntorch import surrogate      ->   from lif_core.compat import surrogate

and runs it again: the same constructor arguments and call conventions as snnTorch
1.0.0's `Leaky` (`(input_, mem) -> (spk, mem)`, `init_leaky()` / `reset_mem()`,
`init_hidden=True` returning `spk`, or `(spk, mem)` with `output=True`), the same
state_dict entries (`beta`, `threshold`, `graded_spikes_factor`, `reset_mechanism_val`),
`learn_beta` / `learn_threshold` as parameters, and the `reset_mechanism` property that
keeps `reset_mechanism_val` in step.  One deliberate difference: snnTorch 1.0.0 loads a
state_dict whose `reset_mechanism_val` disagrees with the constructor's and silently keeps
the constructor's reset; here that is an error naming both.  snnTorch's own surrogate functions
(`snntorch.surrogate.atan(...)`, `fast_sigmoid(...)`, `sigmoid(...)`) are accepted too:
their shape parameter is read from the function, so even the surrogate import may stay.

Each call is one step of `lif_core.leaky.leaky_step`: snnTorch's operations in
snnTorch's order, so spikes and membranes are bit-identical, and autograd through
our own surrogate Functions.  Arguments we do not implement (`inhibition`,
`state_quant`, `surrogate_disable`, `learn_graded_spikes_factor`, surrogates other than
atan, fast sigmoid and sigmoid) raise a one-line ValueError naming them: nothing is
silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from lif_core.leaky import RESET_MECHANISMS, LeakyOptions, LeakySurrogate, leaky_step, snntorch_leaky_options
from lif_core.surrogate import ArcTan, FastSigmoid, Sigmoid

# snnTorch's reset_dict: the value stored in the reset_mechanism_val buffer
RESET_VALUES = {name: index for index, name in enumerate(RESET_MECHANISMS)}

# snnTorch 1.0.0's surrogate factories, by the qualified name of the function they return
_SNNTORCH_SURROGATES: dict[str, tuple[str, Callable[[float], LeakySurrogate]]] = {
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


def as_surrogate(spike_grad: Any) -> LeakySurrogate:
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


class Leaky(nn.Module):
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
        super().__init__()
        options, beta_tensor, threshold_tensor = snntorch_leaky_options(
            beta,
            threshold,
            as_surrogate(spike_grad),
            surrogate_disable=surrogate_disable,
            inhibition=inhibition,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            reset_mechanism=reset_mechanism,
            state_quant=state_quant,
            graded_spikes_factor=float(graded_spikes_factor),
            learn_graded_spikes_factor=learn_graded_spikes_factor,
            reset_delay=reset_delay,
        )
        self._options = options
        self.init_hidden, self.output, self.reset_delay = init_hidden, output, reset_delay
        # the same state_dict entries as snnTorch, in its order: threshold, graded factor,
        # reset mechanism, beta (parameters when learnt, buffers otherwise); mem is not saved
        self._register("threshold", threshold_tensor.detach(), learn_threshold)
        self.register_buffer("graded_spikes_factor", torch.as_tensor(graded_spikes_factor))
        self.register_buffer("reset_mechanism_val", torch.as_tensor(RESET_VALUES[reset_mechanism]))
        self._register("beta", beta_tensor.detach(), learn_beta)
        self.register_buffer("mem", torch.zeros(0), persistent=False)

    def _register(self, name: str, value: Tensor, learn: bool) -> None:
        if learn:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    @property
    def reset_mechanism(self) -> str:
        return self._options.reset_mechanism

    @reset_mechanism.setter
    def reset_mechanism(self, name: str) -> None:
        # a new LeakyOptions validates the name; the buffer follows, as in snnTorch
        self._options = LeakyOptions(name, self._options.reset_delay, self._options.graded_spikes_factor,  # type: ignore[arg-type]
                                     self._options.surrogate)
        self.reset_mechanism_val = torch.as_tensor(RESET_VALUES[name])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        # snnTorch 1.0.0 loads reset_mechanism_val but keeps computing the reset it was built
        # with; rather than follow it silently, a disagreement is an error
        loaded = RESET_MECHANISMS[int(self.reset_mechanism_val)]
        if loaded != self._options.reset_mechanism:
            raise ValueError(
                f"{prefix}reset_mechanism_val in the state_dict says {loaded!r}, but this Leaky was built "
                f"with reset_mechanism={self._options.reset_mechanism!r} (snnTorch 1.0.0 would keep "
                f"computing {self._options.reset_mechanism!r}); build it with reset_mechanism={loaded!r}"
            )
        # the graded factor is read from its buffer at every step, as in snnTorch
        factor = float(self.graded_spikes_factor)
        self._options = LeakyOptions(loaded, self._options.reset_delay, factor, self._options.surrogate)

    def reset_mem(self) -> Tensor:
        """Zero the hidden membrane (snnTorch's `reset_mem`); returns it."""
        self.mem = torch.zeros_like(self.mem)
        return self.mem

    def init_leaky(self) -> Tensor:
        """snnTorch's deprecated alias of `reset_mem`."""
        return self.reset_mem()

    def forward(self, input_: Tensor, mem: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if mem is not None:
            self.mem = mem
        if self.mem.shape != input_.shape:
            # a fresh (or mis-shaped) state starts at zero, as snnTorch does
            self.mem = torch.zeros_like(input_)
        spikes, self.mem = leaky_step(input_, self.mem, self.beta, self.threshold, self._options)
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
