"""The search space of `snn-mnist sweep`, and the settings of one trial.

A space maps setting names to candidate values:

    learning_rate = [1e-3, 2e-3]            a list: grid points, or choices for random/optuna
    surrogate_scale = {loguniform = [5, 30]}  a distribution (random and optuna search only)

given as `--param learning_rate=1e-3,2e-3` / `--param surrogate_scale=loguniform:5:30` or in the
`[space]` table of a TOML file.  Names are the fields of `training.model.ModelConfig` and
`training.train.TrainConfig` (`lr`, `hidden`, `steps` are accepted for `learning_rate`,
`hidden_size`, `num_steps`), and `post_` + a field of `plasticity.posttrain.PostTrainConfig`
(`post_rule`, `post_eta`, `post_epochs`, ...) for post-training after the training.  Seeds are
not a setting: every setting runs once per seed.  Nothing here imports Ray.
"""

from __future__ import annotations

import itertools
import math
import random
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from plasticity.posttrain import PostTrainConfig
from training.errors import SnnMnistError
from training.model import ModelConfig
from training.presets import MODEL_FIELDS, PRESETS, TRAINING_FIELDS, preset_configs
from training.train import TrainConfig

POST_PREFIX = "post_"
POST_FIELDS = frozenset(f.name for f in fields(PostTrainConfig)) - {"seed", "kernel_backend", "eval_batch_size"}
ALIASES = {"lr": "learning_rate", "hidden": "hidden_size", "steps": "num_steps"}
NOT_SETTINGS = {"seed": "use --seeds", "backend": "a property of the machine", "eval_batch_size": "it does not change results"}
KNOWN_NAMES = frozenset(MODEL_FIELDS | TRAINING_FIELDS) - set(NOT_SETTINGS) | {POST_PREFIX + name for name in POST_FIELDS}
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


def configs_for(settings: dict[str, Any], seed: int, preset: str) -> tuple[ModelConfig, TrainConfig, PostTrainConfig | None]:
    """The configs of one trial: the preset, the trial's settings on top, its seed."""
    model = {name: value for name, value in settings.items() if name in MODEL_FIELDS}
    training = {name: value for name, value in settings.items() if name in TRAINING_FIELDS}
    post = {name[len(POST_PREFIX):]: value for name, value in settings.items() if name.startswith(POST_PREFIX)}
    for name in ("epochs", "batch_size", "hidden_size", "num_steps"):
        for group in (model, training):
            if name in group and isinstance(group[name], float) and group[name].is_integer():
                group[name] = int(group[name])
    try:
        model_config, train_config = preset_configs(preset, model, {**training, "seed": seed})
        post_config = replace(PostTrainConfig(seed=seed), **post) if post else None
    except (ValueError, TypeError) as error:
        raise SweepError(f"settings {settings} do not make a valid run: {error}") from None
    return model_config, train_config, post_config


def setting_label(settings: dict[str, Any]) -> str:
    """'learning_rate=0.002 surrogate_scale=10' (sorted; floats in short form)."""
    if not settings:
        return "(preset)"
    return " ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}" for name, value in sorted(settings.items()))
