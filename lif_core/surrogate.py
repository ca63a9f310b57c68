"""Surrogate spike functions: a Heaviside step going forward, a smooth slope going back.

A LIF neuron spikes when its membrane crosses the threshold:

    S = H(U - threshold),   H(x) = 1 if x > 0 else 0

The true derivative dH/dx is zero everywhere except at x = 0, where it is
undefined, so gradient descent through H learns nothing.  Surrogate-gradient
training keeps H in the forward pass and, in the backward pass only, replaces
dS/dU by the derivative of a smooth function that looks like H from afar:

    fast sigmoid (Zenke & Ganguli 2018, "SuperSpike"):
        S ~ x / (1 + slope*|x|)
        dS/dU = 1 / (slope*|x| + 1)^2                          slope = 25 by default

    arctan (Fang et al. 2021):
        S ~ (1/pi) * arctan(pi/2 * alpha * x)
        dS/dU = (alpha/2) / (1 + (pi/2 * alpha * x)^2)           alpha = 2 by default

with x = U - threshold.  For teaching, a third "surrogate" keeps the true
derivative of the step:

    straight Heaviside ("heaviside"):
        dS/dU = 0                        (dH/dx, taken as 0 at x = 0 too)

so a network trained with it receives exactly zero gradient and never learns
(docs/02_true_gradient.md measures that).  And snnTorch's `surrogate.sigmoid`:

    sigmoid ("sigmoid"):
        dS/dU = slope * e^(-slope*x) / (e^(-slope*x) + 1)^2      slope = 25 by default

Fast sigmoid, arctan and sigmoid are written exactly as snnTorch 1.0.0 writes
`surrogate.fast_sigmoid`, `surrogate.atan` and `surrogate.sigmoid` (same operations,
same order), so gradients agree with snnTorch to the last bit where the arithmetic allows.
Note the arctan *derivative* carries the prefactor alpha/2 and peaks at alpha/2
(= 1 for the default alpha), not 1/pi as snnTorch's docstring suggests.

Each surrogate is a tiny frozen dataclass holding its one parameter, and owns a
`torch.autograd.Function` that implements the forward step and the backward
slope.  It also owns its `code`, the number by which every Numba kernel selects
its derivative (`lif_core.sequence_kernels`, `lif_core.leaky_kernels`,
`lif_core.fused_kernels`): this table is the only place those numbers are written.
The whole-sequence LIF layers do not call the Function per step; they call
`derivative()` (or the identical Numba code) inside their hand-written BPTT loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

SurrogateName = Literal["fast_sigmoid", "atan", "heaviside", "sigmoid", "disabled"]


def heaviside(shifted_membrane: Tensor) -> Tensor:
    """S = H(x) = 1 if x > 0 else 0, in the dtype of x (0 at x = 0 exactly)."""
    return (shifted_membrane > 0).to(shifted_membrane.dtype)


class FastSigmoidSpike(torch.autograd.Function):
    """Heaviside forward; fast-sigmoid derivative 1 / (slope*|x| + 1)^2 backward."""

    @staticmethod
    def forward(ctx, shifted_membrane: Tensor, slope: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(shifted_membrane)
        ctx.slope = slope
        return heaviside(shifted_membrane)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (shifted_membrane,) = ctx.saved_tensors
        # dL/dx = dL/dS * 1 / (slope*|x| + 1)^2
        grad_shifted = grad_spikes / (ctx.slope * torch.abs(shifted_membrane) + 1.0) ** 2
        return grad_shifted, None


class ArcTanSpike(torch.autograd.Function):
    """Heaviside forward; arctan derivative (alpha/2) / (1 + (pi/2*alpha*x)^2) backward."""

    @staticmethod
    def forward(ctx, shifted_membrane: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(shifted_membrane)
        ctx.alpha = alpha
        return heaviside(shifted_membrane)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (shifted_membrane,) = ctx.saved_tensors
        # dL/dx = (alpha/2) / (1 + (pi/2 * alpha * x)^2) * dL/dS
        grad_shifted = (
            ctx.alpha / 2 / (1 + (torch.pi / 2 * ctx.alpha * shifted_membrane).pow(2)) * grad_spikes
        )
        return grad_shifted, None


class HeavisideSpike(torch.autograd.Function):
    """Heaviside forward; its true derivative, zero, backward (no surrogate at all)."""

    @staticmethod
    def forward(ctx, shifted_membrane: Tensor) -> Tensor:  # type: ignore[override]
        return heaviside(shifted_membrane)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor) -> Tensor:  # type: ignore[override]
        # dL/dx = dL/dS * dH/dx = dL/dS * 0  (zeros, not 0 * dL/dS: no NaN from an infinite dL/dS)
        return torch.zeros_like(grad_spikes)


def _check_positive_finite(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class FastSigmoid:
    """Fast-sigmoid surrogate; `slope` sets how sharply the pseudo-derivative peaks at threshold."""

    slope: float = 25.0
    name: ClassVar[SurrogateName] = "fast_sigmoid"
    code: ClassVar[int] = 0  # the kernels' number for this surrogate

    def __post_init__(self) -> None:
        _check_positive_finite("fast_sigmoid slope", self.slope)

    @property
    def scale(self) -> float:
        """The surrogate's single shape parameter (slope), as the kernels take it."""
        return float(self.slope)

    def spike(self, shifted_membrane: Tensor) -> Tensor:
        """S = H(U - thr) with the fast-sigmoid backward; takes x = U - thr."""
        return FastSigmoidSpike.apply(shifted_membrane, self.slope)

    def derivative(self, shifted_membrane: Tensor) -> Tensor:
        """dS/dU = 1 / (slope*|x| + 1)^2 at x = U - thr."""
        return 1.0 / (self.slope * torch.abs(shifted_membrane) + 1.0) ** 2


@dataclass(frozen=True)
class ArcTan:
    """Arctan surrogate (snnTorch's default for `snn.Leaky`); `alpha` sets width and peak."""

    alpha: float = 2.0
    name: ClassVar[SurrogateName] = "atan"
    code: ClassVar[int] = 1  # the kernels' number for this surrogate

    def __post_init__(self) -> None:
        _check_positive_finite("atan alpha", self.alpha)

    @property
    def scale(self) -> float:
        """The surrogate's single shape parameter (alpha), as the kernels take it."""
        return float(self.alpha)

    def spike(self, shifted_membrane: Tensor) -> Tensor:
        """S = H(U - thr) with the arctan backward; takes x = U - thr."""
        return ArcTanSpike.apply(shifted_membrane, self.alpha)

    def derivative(self, shifted_membrane: Tensor) -> Tensor:
        """dS/dU = (alpha/2) / (1 + (pi/2 * alpha * x)^2) at x = U - thr."""
        return self.alpha / 2 / (1 + (torch.pi / 2 * self.alpha * shifted_membrane).pow(2))


@dataclass(frozen=True)
class StraightHeaviside:
    """No surrogate: the step's true derivative, zero almost everywhere (and taken as 0 at
    threshold).  Gradient descent through it learns nothing; kept to show exactly that."""

    name: ClassVar[SurrogateName] = "heaviside"
    code: ClassVar[int] = 2  # the kernels' number for this surrogate

    @property
    def scale(self) -> float:
        """No shape parameter; 1.0 only fills the kernels' scale argument, which is unused."""
        return 1.0

    def spike(self, shifted_membrane: Tensor) -> Tensor:
        """S = H(U - thr) with a zero backward; takes x = U - thr."""
        return HeavisideSpike.apply(shifted_membrane)

    def derivative(self, shifted_membrane: Tensor) -> Tensor:
        """dS/dU = dH/dx = 0 at x = U - thr."""
        return torch.zeros_like(shifted_membrane)


@dataclass(frozen=True)
class SurrogateDisabled(StraightHeaviside):
    """snnTorch's `surrogate_disable=True`: the plain step `(x > 0).float()`, no autograd node
    at all, so the graph is cut at the spike (StraightHeaviside keeps it, with a zero
    gradient).  The whole-sequence kernels read its code, StraightHeaviside's: no gradient
    passes a spike there either."""

    name: ClassVar[SurrogateName] = "disabled"

    def spike(self, shifted_membrane: Tensor) -> Tensor:
        """S = (x > 0).float(), as snnTorch's `_surrogate_bypass` (float32 whatever x's dtype)."""
        return (shifted_membrane > 0).float()


class SigmoidSpike(torch.autograd.Function):
    """Heaviside forward; sigmoid derivative slope*e^(-slope*x) / (e^(-slope*x) + 1)^2 backward."""

    @staticmethod
    def forward(ctx, shifted_membrane: Tensor, slope: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(shifted_membrane)
        ctx.slope = slope
        return heaviside(shifted_membrane)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (shifted_membrane,) = ctx.saved_tensors
        # dL/dx = dL/dS * slope * e^(-slope*x) / (e^(-slope*x) + 1)^2   (snnTorch's order of operations)
        grad_shifted = (
            grad_spikes
            * ctx.slope
            * torch.exp(-ctx.slope * shifted_membrane)
            / ((torch.exp(-ctx.slope * shifted_membrane) + 1) ** 2)
        )
        return grad_shifted, None


@dataclass(frozen=True)
class Sigmoid:
    """Sigmoid surrogate, written exactly as snnTorch 1.0.0's `surrogate.sigmoid(slope=25)`.

    dS/dU = slope * e^(-slope*x) / (e^(-slope*x) + 1)^2, peak slope/4 at x = 0.  The formula is
    evaluated as snnTorch evaluates it, overflow included: once e^(-slope*x) squared overflows
    (float32, slope 25: x < -1.78) the derivative is exactly 0 instead of tiny, and once
    e^(-slope*x) itself overflows (x < -3.55) it is inf/inf = NaN.  Bit-identical to snnTorch
    means NaN there too; float64 pushes both limits out by a factor of about 8.
    """

    slope: float = 25.0
    name: ClassVar[SurrogateName] = "sigmoid"
    code: ClassVar[int] = 3  # the kernels' number for this surrogate

    def __post_init__(self) -> None:
        _check_positive_finite("sigmoid slope", self.slope)

    @property
    def scale(self) -> float:
        """The surrogate's single shape parameter (slope)."""
        return float(self.slope)

    def spike(self, shifted_membrane: Tensor) -> Tensor:
        """S = H(U - thr) with the sigmoid backward; takes x = U - thr."""
        return SigmoidSpike.apply(shifted_membrane, self.slope)

    def derivative(self, shifted_membrane: Tensor) -> Tensor:
        """dS/dU = slope * e^(-slope*x) / (e^(-slope*x) + 1)^2 at x = U - thr."""
        return (
            self.slope
            * torch.exp(-self.slope * shifted_membrane)
            / ((torch.exp(-self.slope * shifted_membrane) + 1) ** 2)
        )


Surrogate = FastSigmoid | ArcTan | StraightHeaviside | Sigmoid | SurrogateDisabled

# name -> class; the kernels' codes are each class's `code`
SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls for cls in (FastSigmoid, ArcTan, StraightHeaviside, Sigmoid, SurrogateDisabled)
}
SURROGATE_NAMES: tuple[SurrogateName, ...] = tuple(SURROGATES)  # type: ignore[assignment]


def make_surrogate(name: str, scale: float | None = None) -> Surrogate:
    """Build a surrogate by name; `scale` is the slope (fast_sigmoid, sigmoid) or alpha (atan);
    "heaviside" and "disabled" take no scale."""
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}: choose one of {', '.join(SURROGATE_NAMES)}")
    if issubclass(SURROGATES[name], StraightHeaviside):
        if scale is not None:
            raise ValueError(f"the {name} surrogate has no shape parameter, got scale {scale!r}")
        return SURROGATES[name]()
    return SURROGATES[name]() if scale is None else SURROGATES[name](float(scale))  # type: ignore[call-arg]


def surrogate_to_json(surrogate: Surrogate) -> dict[str, Any]:
    """{"name": ..., "scale": ...} (no scale for "heaviside", "disabled"); `surrogate_from_json` reads it back."""
    if isinstance(surrogate, StraightHeaviside):
        return {"name": surrogate.name}
    return {"name": surrogate.name, "scale": surrogate.scale}


def surrogate_from_json(payload: dict[str, Any]) -> Surrogate:
    """Inverse of `surrogate_to_json`."""
    return make_surrogate(str(payload.get("name")), payload.get("scale"))
