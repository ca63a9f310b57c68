"""The search space of `snn-mnist sweep`, and the settings of one trial.

A space maps setting names to candidate values:

    learning_rate = [1e-3, 2e-3]            a list: grid points, or choices for random/optuna
    surrogate_scale = {loguniform = [5, 30]}  a distribution (random and optuna search only)

given as `--param learning_rate=1e-3,2e-3` / `--param surrogate_scale=loguniform:5:30` or in the
`[space]` table of a TOML file.  Names are the flat network settings
(`training.presets.NETWORK_SETTINGS`: layer_sizes, hidden_size, num_steps, input_coding, loss,
activity_penalty, beta, threshold, graded_spikes_factor, reset_mechanism, reset_delay, surrogate,
surrogate_scale, learn_beta, learn_threshold, learn_graded_spikes_factor), the fields of
`training.train.TrainConfig` (`lr`, `hidden`, `steps` and `alpha_reg` are accepted for
`learning_rate`, `hidden_size`, `num_steps` and `activity_penalty`), and `post_` + a field of
`plasticity.posttrain.PostTrainConfig` (`post_rule`, `post_eta`, `post_epochs`, ...) for
post-training after the training.  A network setting's value is checked as `snn-mnist train`
checks its flag; layer sizes are written 784-256-10 (commas separate a setting's values) or,
in a TOML file, as a list (`layer_sizes = [[784, 256, 10], [784, 1000, 10]]`).  Seeds are
not a setting: every setting runs once per seed.  Nothing here imports Ray.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from experiments.network_options import SETTING_OF_FLAG, network_settings
from plasticity.posttrain import PostTrainConfig, check_post_trainable
from training.errors import SnnMnistError
from training.network import NetworkConfig
from training.presets import LEARNT, NETWORK_SETTINGS, PRESETS, TRAINING_SETTINGS, preset_configs
from training.train import TrainConfig

POST_PREFIX = "post_"
POST_FIELDS = frozenset(f.name for f in fields(PostTrainConfig)) - {"seed", "kernel_backend", "eval_batch_size"}
# alpha_reg: the activity penalty's name when it was a training setting (and in older sweep specs)
ALIASES = {"lr": "learning_rate", "hidden": "hidden_size", "steps": "num_steps", "alpha_reg": "activity_penalty"}
NOT_SETTINGS = {
    "seed": "use --seeds",
    "input_seed": "the input draws follow each trial's seed: use --seeds",
    "backend": "a property of the machine",
    "eval_batch_size": "it does not change results",
}
KNOWN_NAMES = frozenset(NETWORK_SETTINGS | TRAINING_SETTINGS) - set(NOT_SETTINGS) | {POST_PREFIX + name for name in POST_FIELDS}
WHOLE_NUMBERS = ("epochs", "batch_size", "augment_shift", "hidden_size", "num_steps")  # 2.0 from a float range is 2
# network settings whose flags take a number
NUMBERS = ("hidden_size", "num_steps", "activity_penalty", "beta", "threshold", "graded_spikes_factor", "surrogate_scale")
FLAG_OF_SETTING = {setting: destination for destination, setting in SETTING_OF_FLAG.items()}
SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("none", "asha")
METRIC = "val_acc"  # trials are compared on validation accuracy after the last epoch, never on the test set


class SweepError(SnnMnistError):
    """A sweep cannot start or finish as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Distribution:
    """A continuous or integer range for random and optuna search."""

    kind: str  # "loguniform", "uniform" or "randint" (low <= k <= high)
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.kind not in ("loguniform", "uniform", "randint"):
            raise SweepError(f"unknown distribution {self.kind!r}; use loguniform, uniform or randint")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise SweepError(f"{self.kind} needs low < high, got {self.low!r}, {self.high!r}")
        if self.kind == "loguniform" and self.low <= 0:
            raise SweepError(f"loguniform needs a positive low end, got {self.low!r}")

    def sample(self, rng: random.Random) -> float | int:
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return rng.randint(int(self.low), int(self.high))

    def to_json(self) -> dict[str, list[float]]:
        return {self.kind: [self.low, self.high]}


Candidates = tuple[Any, ...] | Distribution


def canonical_name(name: str) -> str:
    """`lr` -> learning_rate, `post.eta` / `post-eta` -> post_eta; unknown names are refused."""
    key = name.strip().replace("-", "_").replace(".", "_")
    key = ALIASES.get(key, key)
    if key in NOT_SETTINGS:
        raise SweepError(f"{name!r} cannot be searched ({NOT_SETTINGS[key]})")
    if key not in KNOWN_NAMES:
        raise SweepError(f"unknown setting {name!r}; known: {', '.join(sorted(KNOWN_NAMES))}")
    return key


def parse_scalar(text: str) -> Any:
    """'3' -> 3, '1e-3' -> 0.001, 'true' -> True, anything else stays a string."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_param(text: str) -> tuple[str, Candidates]:
    """'name=v1,v2' or 'name=loguniform:LOW:HIGH' (also uniform, randint)."""
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise SweepError(f"--param expects NAME=V1,V2,... or NAME=loguniform:LOW:HIGH, got {text!r}")
    kind, colon, bounds = values.partition(":")
    if colon and kind in ("loguniform", "uniform", "randint"):
        low, _, high = bounds.partition(":")
        try:
            return canonical_name(name), Distribution(kind, float(low), float(high))
        except ValueError:
            raise SweepError(f"--param {text!r}: expected {kind}:LOW:HIGH with two numbers") from None
    return canonical_name(name), tuple(parse_scalar(part) for part in values.split(",") if part.strip())


def candidates_from_toml(name: str, value: Any) -> Candidates:
    if isinstance(value, list) and value:
        return tuple(value)
    if isinstance(value, dict) and len(value) == 1:
        (kind, bounds), = value.items()
        if isinstance(bounds, list) and len(bounds) == 2:
            return Distribution(kind, float(bounds[0]), float(bounds[1]))
    if isinstance(value, (int, float, str, bool)):
        return (value,)
    raise SweepError(f"[space] {name}: expected a list of values or {{loguniform = [LOW, HIGH]}}, got {value!r}")


def read_toml(path: Path) -> tuple[dict[str, Candidates], dict[str, Any]]:
    """([space] as candidates, [sweep] options) of a sweep file."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise SweepError(f"cannot read the sweep file {path}: {error}. Fix: pass a TOML file with a [space] table") from None
    unknown = sorted(set(document) - {"space", "sweep"})
    if unknown:
        raise SweepError(f"{path}: unknown table(s) {', '.join(unknown)}; a sweep file has [space] and [sweep]")
    space = {canonical_name(name): candidates_from_toml(name, value) for name, value in document.get("space", {}).items()}
    return space, dict(document.get("sweep", {}))


@dataclass(frozen=True)
class SweepSpec:
    """Everything that decides which trials a sweep runs and what they compute."""

    space: dict[str, Candidates] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    search: str = "grid"
    samples: int = 8  # settings drawn by random search, trials run by optuna
    scheduler: str = "none"
    preset: str = "study"
    validation: int = 10_000
    train_subset: int | None = None
    test_subset: int | None = None
    threads: int = 1  # per trial
    max_failures: int = 2  # retries of a trial whose worker dies
    search_seed: int = 0

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise SweepError(f"--search must be one of {', '.join(SEARCHES)}, got {self.search!r}")
        if self.scheduler not in SCHEDULERS:
            raise SweepError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.preset not in PRESETS:
            raise SweepError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise SweepError(f"--seeds must be distinct non-negative integers, got {self.seeds!r}")
        for name, value, low in (("--samples", self.samples, 1), ("--threads", self.threads, 1),
                                 ("--max-failures", self.max_failures, 0), ("--validation", self.validation, 1)):
            if not isinstance(value, int) or value < low:
                raise SweepError(
                    f"{name} must be an integer >= {low}, got {value!r}"
                    + (" (trials are compared on validation images, never on the test set)" if name == "--validation" else "")
                )
        if self.search == "grid":
            ranges = [name for name, values in self.space.items() if isinstance(values, Distribution)]
            if ranges:
                raise SweepError(f"grid search needs lists of values; {', '.join(ranges)} is a range. Fix: --search random or optuna")
        if self.search == "optuna" and len(self.seeds) > 1:
            raise SweepError("optuna search tunes on one seed (its trials are not a grid). Fix: --seeds 0, then rerun the winner over seeds")
        for name, values in self.space.items():
            if not isinstance(values, Distribution) and not values:
                raise SweepError(f"setting {name} has no values")
        for settings in (self.expand() if self.search != "optuna" else [first_values(self.space)]):
            configs_for(settings, self.seeds[0], self.preset)  # every combination must be a valid run

    def expand(self) -> list[dict[str, Any]]:
        """The settings grid/random search runs (each once per seed), in a fixed order."""
        names = sorted(self.space)
        if self.search == "grid":
            return [dict(zip(names, values)) for values in itertools.product(*(self.space[name] for name in names))]
        rng = random.Random(self.search_seed)
        return [
            {name: (self.space[name].sample(rng) if isinstance(self.space[name], Distribution) else rng.choice(self.space[name]))
             for name in names}
            for _ in range(self.samples)
        ]

    @property
    def trial_count(self) -> int:
        return self.samples if self.search == "optuna" else len(self.expand()) * len(self.seeds)

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["space"] = {name: values.to_json() if isinstance(values, Distribution) else list(values)
                            for name, values in sorted(self.space.items())}
        payload["seeds"] = list(self.seeds)
        return payload


def first_values(space: dict[str, Candidates]) -> dict[str, Any]:
    return {name: values.low if isinstance(values, Distribution) else values[0] for name, values in space.items()}


def flag_value(name: str, value: Any) -> Any:
    """A sweep's value of a network setting as the setting's `snn-mnist train` flag takes it:
    layer sizes 784-256-10 or [784, 256, 10] -> "784,256,10"; learn_* True -> "all" (every
    layer), layer numbers [1, 3] -> "1,3", False -> None (no flag); anything else as it is."""
    if name == "layer_sizes":
        if isinstance(value, str):
            return value.replace("-", ",")
        if isinstance(value, (list, tuple)):
            return ",".join(str(size) for size in value)
        raise ValueError(
            f"layer_sizes {value!r}: give the sizes as 784-256-10, or as a list inside the list of values "
            "in a TOML file (layer_sizes = [[784, 256, 10]])"
        )
    if name in LEARNT:
        if isinstance(value, bool):
            return "all" if value else None
        return ",".join(str(layer) for layer in value) if isinstance(value, (list, tuple)) else str(value)
    return value


def checked_network_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The network settings of a trial, parsed and checked as `snn-mnist train` parses and
    checks its network flags (`experiments.network_options.network_settings`); a bad value
    raises ValueError naming its flag."""
    for name, value in settings.items():
        if name in NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            # argparse refuses it on the command line
            raise ValueError(f"{name} {value!r} is not a number. Fix: give {name} numbers")
    flags = {FLAG_OF_SETTING[name]: flag_value(name, value) for name, value in settings.items()}
    # learn_* False has no flag: it is kept as given
    return {**settings, **network_settings(argparse.Namespace(**flags))}


def configs_for(
    settings: dict[str, Any], seed: int, preset: str
) -> tuple[NetworkConfig, TrainConfig, PostTrainConfig | None]:
    """The configs of one trial: the preset, the trial's settings on top, its seed.  Setting
    names may be aliases (a sweep started before a setting was renamed: alpha_reg)."""
    named = {ALIASES.get(name, name): value for name, value in settings.items()}
    for name in WHOLE_NUMBERS:
        if isinstance(named.get(name), float) and named[name].is_integer():
            named[name] = int(named[name])
    network = {name: value for name, value in named.items() if name in NETWORK_SETTINGS}
    training = {name: value for name, value in named.items() if name in TRAINING_SETTINGS}
    post = {name[len(POST_PREFIX):]: value for name, value in named.items() if name.startswith(POST_PREFIX)}
    try:
        network_config, train_config = preset_configs(preset, checked_network_settings(network), {**training, "seed": seed})
        post_config = replace(PostTrainConfig(seed=seed), **post) if post else None
        if post_config is not None:
            check_post_trainable(network_config, "the trial's network")
    except (ValueError, TypeError) as error:
        raise SweepError(f"settings {settings} do not make a valid run: {error}") from None
    return network_config, train_config, post_config


def setting_label(settings: dict[str, Any]) -> str:
    """'learning_rate=0.002 surrogate_scale=10' (sorted; floats in short form)."""
    if not settings:
        return "(preset)"
    return " ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}" for name, value in sorted(settings.items()))
