"""The network's command-line flags, in one place: `train`, `evaluate` and `crosscheck` take
them from here, and `sweep` checks its network `--param` values with `network_settings`.

Every flag names one flat network setting (`training.presets.NETWORK_SETTINGS`); a flag not
given leaves the setting as the preset (the study's network by default) has it:

    --layers 784,H,...,10  layer_sizes     --hidden H        hidden_size (784-H-10 networks)
    --steps T              num_steps       --input KIND      input_coding (current, rate)
    --loss KIND            loss            --alpha-reg W     activity_penalty (also --activity-penalty)
    --beta B               beta            --threshold V     threshold
    --graded G             graded_spikes_factor              --reset KIND   reset_mechanism
    --reset-delay on|off   reset_delay     --surrogate NAME  surrogate, --surrogate-scale S
    --learn-beta [LAYERS], --learn-threshold [LAYERS], --learn-graded [LAYERS]
                           learn_beta, learn_threshold, learn_graded_spikes_factor: alone, every
                           layer; with layer numbers (e.g. 1,3), those layers
    --per-neuron beta[,threshold]                            per_neuron: one value per neuron

A checkpoint holds the layer sizes, reset mechanisms and values (beta, threshold, graded
factor), so with one those flags (`CHECKPOINT_FLAGS`) are refused.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from lif_core.neuron import RESET_MECHANISMS
from lif_core.surrogate import SURROGATE_NAMES
from training.data import INPUT_SIZE, NUM_CLASSES
from training.network import INPUT_CODINGS, LOSSES

# flag destination -> the flat setting it sets
SETTING_OF_FLAG = {
    "layers": "layer_sizes",
    "hidden": "hidden_size",
    "steps": "num_steps",
    "input": "input_coding",
    "loss": "loss",
    "activity_penalty": "activity_penalty",
    "beta": "beta",
    "threshold": "threshold",
    "graded": "graded_spikes_factor",
    "reset": "reset_mechanism",
    "reset_delay": "reset_delay",
    "surrogate": "surrogate",
    "surrogate_scale": "surrogate_scale",
    "learn_beta": "learn_beta",
    "learn_threshold": "learn_threshold",
    "learn_graded": "learn_graded_spikes_factor",
    "per_neuron": "per_neuron",
}
# what a state_dict holds: with --checkpoint these flags are refused
CHECKPOINT_FLAGS = ("layers", "hidden", "beta", "threshold", "graded", "reset", "per_neuron")
CLI_SURROGATES = tuple(name for name in SURROGATE_NAMES if name != "disabled")


def flag(name: str) -> str:
    """argparse destination -> the flag as typed: "input_seed" -> "--input-seed"."""
    return "--" + name.replace("_", "-")


def on_off(value: str) -> bool:
    """on/true -> True, off/false -> False (any case), for flags such as --reset-delay."""
    choices = {"on": True, "true": True, "off": False, "false": False}
    if value.lower() not in choices:
        raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")
    return choices[value.lower()]


def add_network_options(parser: argparse.ArgumentParser, said: str = "study") -> None:
    """The network flags, all defaulting to None (the preset's value; `said` names it in --help)."""
    group = parser.add_argument_group(
        "network",
        f"The network; a flag not given keeps the {said}'s setting (784-512-10, beta 0.9, subtract reset, "
        "fast sigmoid 25, 25 steps of constant current, count loss + 1e-4 x hidden activity).",
    )
    group.add_argument(
        "--layers", default=None, metavar=f"{INPUT_SIZE},H,...,{NUM_CLASSES}",
        help=f"layer sizes, inputs first, e.g. {INPUT_SIZE},1000,{NUM_CLASSES} or {INPUT_SIZE},256,128,{NUM_CLASSES}",
    )
    group.add_argument("--hidden", type=int, default=None, help=f"hidden neurons of a {INPUT_SIZE}-H-{NUM_CLASSES} network ({said}: 512)")
    group.add_argument("--steps", type=int, default=None, help=f"time steps per image ({said}: 25)")
    group.add_argument(
        "--input", choices=INPUT_CODINGS, default=None,
        help=f"input coding: the image as constant current, or spikegen.rate spikes ({said}: current)",
    )
    group.add_argument(
        "--loss", choices=LOSSES, default=None,
        help="count: CE on output spike counts; membrane: the sum over steps of CE on the output membrane, "
        f"as snnTorch's tutorial 5 ({said}: count)",
    )
    group.add_argument(
        "--alpha-reg", "--activity-penalty", dest="activity_penalty", type=float, default=None, metavar="W",
        help=f"weight of the hidden spike-activity penalty added to the loss ({said}: 1e-4)",
    )
    group.add_argument("--beta", type=float, default=None, help=f"membrane decay per step, in [0, 1] ({said}: 0.9)")
    group.add_argument("--threshold", type=float, default=None, help=f"firing threshold ({said}: 1)")
    group.add_argument("--graded", type=float, default=None, help=f"graded_spikes_factor, the spike's size ({said}: 1)")
    group.add_argument("--reset", choices=RESET_MECHANISMS, default=None, help=f"reset mechanism ({said}: subtract)")
    group.add_argument(
        "--reset-delay", type=on_off, default=None, metavar="on|off",
        help=f"snn.Leaky's reset_delay ({said}: on, snnTorch's default)",
    )
    group.add_argument(
        "--surrogate", choices=CLI_SURROGATES, default=None,
        help=f"surrogate gradient ({said}: fast_sigmoid; atan is snnTorch's default)",
    )
    group.add_argument(
        "--surrogate-scale", type=float, default=None,
        help="fast_sigmoid or sigmoid slope (default 25), atan alpha (default 2)",
    )
    for name, what in (("beta", "beta"), ("threshold", "the threshold"), ("graded", "the graded spike factor")):
        group.add_argument(
            f"--learn-{name}", nargs="?", const="all", default=None, metavar="LAYERS",
            help=f"{what} is learnt: alone, in every layer; with layer numbers (e.g. 1,2), in those layers only",
        )
    group.add_argument(
        "--per-neuron", default=None, metavar="beta[,threshold]",
        help=f"one beta (and/or threshold) per neuron, each starting at --beta / --threshold ({said}: one per layer)",
    )


def parse_layers(text: str) -> tuple[int, ...]:
    """--layers "784,1000,10" -> (784, 1000, 10): MNIST's 784 inputs first, its 10 classes last."""
    example = f"{INPUT_SIZE},1000,{NUM_CLASSES}"
    words = [word.strip() for word in text.split(",")]
    if len(words) < 2 or not all(word.isdigit() and int(word) >= 1 for word in words):
        raise ValueError(
            f"--layers {text!r} is not a list of layer sizes. Fix: give two or more positive integers "
            f"separated by commas, inputs first, e.g. --layers {example}."
        )
    sizes = tuple(int(word) for word in words)
    if sizes[0] != INPUT_SIZE or sizes[-1] != NUM_CLASSES:
        raise ValueError(
            f"--layers {text}: the network takes {sizes[0]} inputs and gives {sizes[-1]} outputs; MNIST needs "
            f"{INPUT_SIZE} and {NUM_CLASSES}. Fix: start with {INPUT_SIZE} and end with {NUM_CLASSES}, e.g. --layers {example}."
        )
    return sizes


def _number(value: float, name: str, wanted: str, ok: bool) -> float:
    if not (math.isfinite(value) and ok):
        raise ValueError(f"{flag(name)} must be {wanted}, got {value!r}. Fix: pass such a value.")
    return value


def _learnt(value: str | None, name: str) -> bool | tuple[int, ...] | None:
    """--learn-beta alone ("all") -> True; "1,3" -> (1, 3); checked against the layers later."""
    if value is None:
        return None
    if value == "all":
        return True
    words = [word.strip() for word in value.split(",")]
    if not all(word.isdigit() and int(word) >= 1 for word in words):
        raise ValueError(
            f"{flag(name)} {value!r}: give {flag(name)} alone (every layer) or layer numbers from 1 separated "
            f"by commas, e.g. {flag(name)} 1,2."
        )
    return tuple(int(word) for word in words)


def network_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The flat network settings the flags give (absent flags left out), each checked: a bad
    value is a one-line ValueError naming its flag."""
    given: dict[str, Any] = {}
    for name, setting in SETTING_OF_FLAG.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name == "layers":
            value = parse_layers(value)
        elif name in ("hidden", "steps"):
            if value < 1:
                raise ValueError(f"{flag(name)} must be a positive integer, got {value}. Fix: pass e.g. {flag(name)} 25.")
        elif name == "beta":
            _number(value, name, "a number in [0, 1] (the membrane decay per step)", 0.0 <= value <= 1.0)
        elif name in ("threshold", "surrogate_scale"):
            _number(value, name, "a positive finite number", value > 0)
        elif name == "graded":
            _number(value, name, "a finite non-zero number", value != 0)
        elif name == "activity_penalty":
            _number(value, "alpha_reg", "a non-negative finite number", value >= 0)
        elif name.startswith("learn_"):
            value = _learnt(value, name)
        given[setting] = value
    if "layer_sizes" in given and "hidden_size" in given:
        raise ValueError("--layers and --hidden both give the sizes. Fix: give one of them.")
    return given


def refuse_checkpoint_flags(args: argparse.Namespace) -> None:
    """With --checkpoint (or a checkpoint argument) the sizes, resets and values come from its
    tensors: a one-line error naming the first of those flags that was given."""
    for name in CHECKPOINT_FLAGS:
        if getattr(args, name, None) is not None:
            raise ValueError(
                f"{flag(name)}: a checkpoint holds the layer sizes, reset mechanisms, beta, threshold and graded "
                f"factor, so they come from its tensors. Fix: drop {flag(name)}."
            )
