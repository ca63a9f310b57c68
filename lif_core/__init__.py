"""lif_core: leaky integrate-and-fire neurons with surrogate gradients, written from scratch.

    surrogate      Heaviside forward / smooth backward: FastSigmoid, ArcTan (and
                   StraightHeaviside, the true zero gradient, for teaching)
    neuron         LIFParameters, LIFState, lif_step, and the readable torch reference
    numba_kernels  the same forward and BPTT loops as Numba CPU kernels
    sequence       lif_sequence: the whole-sequence autograd Function, both backends
    modules        LIF: an nn.Module with snnTorch-compatible buffers
    leaky          the general snn.Leaky (every reset mechanism, reset_delay, scalar or
                   per-neuron, learnable beta/threshold, graded spikes), readable torch
                   with hand-written BPTT: LeakyOptions, leaky_step, leaky_sequence
    leaky_kernels  the same loops as Numba CPU kernels (leaky_sequence's numba backend)
"""

from lif_core.leaky import (
    LeakyOptions,
    LeakySequenceOutput,
    leaky_sequence,
    leaky_step,
    leaky_unrolled,
    snntorch_leaky_options,
)
from lif_core.modules import LIF
from lif_core.neuron import LIFParameters, LIFState, initial_state, lif_step, unrolled_sequence
from lif_core.sequence import BACKENDS, LIFSequenceOutput, lif_sequence, resolve_backend
from lif_core.surrogate import ArcTan, FastSigmoid, Sigmoid, StraightHeaviside, Surrogate, make_surrogate

__all__ = [
    "ArcTan",
    "BACKENDS",
    "FastSigmoid",
    "LIF",
    "LIFParameters",
    "LIFSequenceOutput",
    "LIFState",
    "LeakyOptions",
    "LeakySequenceOutput",
    "Sigmoid",
    "StraightHeaviside",
    "Surrogate",
    "initial_state",
    "leaky_sequence",
    "leaky_step",
    "leaky_unrolled",
    "lif_sequence",
    "lif_step",
    "make_surrogate",
    "resolve_backend",
    "snntorch_leaky_options",
    "unrolled_sequence",
]
