"""Named training recipes for the 784-512-10 network: `snn-mnist train --preset NAME`.

A preset is a set of ModelConfig and TrainConfig values; flags given on the command
line override it.  "study" is the study's recipe (the dataclass defaults).  "tuned" was
chosen by `snn-mnist sweep` on a validation split carved from the 60,000 training images
(never on the test set); docs/tuning.md has the search that picked it and its measured
test accuracy over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from training.model import ModelConfig
from training.train import TrainConfig


@dataclass(frozen=True)
class Preset:
    description: str
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields that differ from its defaults
    training: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields that differ from its defaults


PRESETS: dict[str, Preset] = {
    "study": Preset("the study's recipe: Adam 1e-3 constant, 10 epochs, fast sigmoid slope 25"),
    "tuned": Preset(
        "cosine decay from Adam 1e-3 over 30 epochs, fast sigmoid slope 2, training images moved by up to 1 pixel; "
        "chosen on validation by snn-mnist sweep (docs/tuning.md)",
        model={"surrogate": "fast_sigmoid", "surrogate_scale": 2.0},
        training={"epochs": 30, "learning_rate": 1e-3, "lr_schedule": "cosine", "augment_shift": 1},
    ),
}

MODEL_FIELDS = frozenset(f.name for f in fields(ModelConfig))
TRAINING_FIELDS = frozenset(f.name for f in fields(TrainConfig))


def preset_configs(
    name: str, model_overrides: dict[str, Any] | None = None, training_overrides: dict[str, Any] | None = None
) -> tuple[ModelConfig, TrainConfig]:
    """The preset's (ModelConfig, TrainConfig), with the overrides (values not None) on top."""
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    preset = PRESETS[name]
    given_model = {k: v for k, v in (model_overrides or {}).items() if v is not None}
    model = dict(preset.model)
    if given_model.get("surrogate", model.get("surrogate")) != model.get("surrogate", ModelConfig().surrogate):
        model.pop("surrogate_scale", None)  # the preset's scale belongs to the preset's surrogate
    model.update(given_model)
    training = {**preset.training, **{k: v for k, v in (training_overrides or {}).items() if v is not None}}
    for given, allowed, what in ((model, MODEL_FIELDS, "model"), (training, TRAINING_FIELDS, "training")):
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise ValueError(f"unknown {what} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    return replace(ModelConfig(), **model), replace(TrainConfig(), **training)
