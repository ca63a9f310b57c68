"""lif_core: the leaky integrate-and-fire neuron with surrogate gradients, written from scratch.

One neuron, snnTorch 1.0.0's `snn.Leaky`, in three faces: a function over a whole
sequence (`leaky_sequence`), a module over a whole sequence (`Leaky`) and a drop-in module
called step by step (`lif_core.compat.Leaky`).  Where things live:

    surrogate         Heaviside forward / smooth backward: FastSigmoid, ArcTan, Sigmoid (and
                      StraightHeaviside, the true zero gradient, for teaching); each owns the
                      code by which the kernels select it
    neuron            the shared records (LeakyOptions, RESET_MECHANISMS, LeakySequenceOutput)
                      and the default neuron's readable reference: LIFParameters, lif_step,
                      the BPTT loop written out
    leaky             the neuron: every reset mechanism, reset_delay, scalar or per-neuron,
                      learnable beta / threshold / graded factor; `leaky_sequence` takes the
                      specialised path below wherever the options are snn.Leaky's defaults
    sequence          lif_sequence, the specialised path of the default neuron, and its
    sequence_kernels  Numba kernels
    leaky_kernels     the general loops as Numba kernels
    fused, fused_kernels  LIF -> Linear -> LIF in one kernel (the study's network's fast path)
    backend           where a neuron runs: torch, numba or auto
    modules           Leaky, the nn.Module with snnTorch's buffers
    compat            the drop-in: `from lif_core import compat as snn`
"""

from lif_core.backend import BACKENDS, Backend, check_backend, choose_backend
from lif_core.leaky import leaky_sequence, leaky_step, leaky_unrolled
from lif_core.modules import Leaky
from lif_core.neuron import (
    RESET_MECHANISMS,
    LeakyOptions,
    LeakySequenceOutput,
    LIFParameters,
    LIFState,
    initial_state,
    lif_step,
    unrolled_sequence,
)
from lif_core.sequence import lif_sequence
from lif_core.surrogate import (
    SURROGATES,
    ArcTan,
    FastSigmoid,
    Sigmoid,
    StraightHeaviside,
    Surrogate,
    SurrogateDisabled,
    make_surrogate,
    surrogate_from_json,
    surrogate_to_json,
)

__all__ = [
    "ArcTan",
    "BACKENDS",
    "Backend",
    "FastSigmoid",
    "LIFParameters",
    "LIFState",
    "Leaky",
    "LeakyOptions",
    "LeakySequenceOutput",
    "RESET_MECHANISMS",
    "SURROGATES",
    "Sigmoid",
    "StraightHeaviside",
    "Surrogate",
    "SurrogateDisabled",
    "check_backend",
    "choose_backend",
    "initial_state",
    "leaky_sequence",
    "leaky_step",
    "leaky_unrolled",
    "lif_sequence",
    "lif_step",
    "make_surrogate",
    "surrogate_from_json",
    "surrogate_to_json",
    "unrolled_sequence",
]
