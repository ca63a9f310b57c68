"""The numbers the teaching docs quote: collected, formatted, written, and put into the Markdown.

`snn-mnist explain` measures every number the docs in `docs/` quote and records
each in a `NumberBook` under a key, with the format the docs print it in and a
kind that says how exactly another machine can reproduce it:

    exact      pure logic or bit-exact float arithmetic (spike times, snnTorch
               parity, closed forms): the same string everywhere;
    float      a float computed through sums whose order may differ elsewhere
               (a gradient norm, a loss): equal to about 1e-3 relative;
    accuracy   a test accuracy in percent after training or evaluation: depends
               on the float rounding of the matrix products, so on the CPU's
               instruction set and the library versions, and not on anything else;
    training   another number read off a trained network (say the largest weight
               change): the same dependence, compared to a relative 5e-2;
    roundoff   the size of a float rounding error (say 4e-16): its exact value
               depends on the order of operations, its size does not;
    environment the run's settings and library versions, quoted for the record:
               compared only where the environment is the same.

The Markdown marks every quoted number as a span

    <!-- num:KEY -->VALUE<!-- /num -->

which renders on a code-hosting site as plain VALUE (HTML comments are not
shown).  `render_markdown` rewrites each VALUE from the book; a doc whose
rendering differs from its text quotes a stale number.  `numbers.json` holds
the raw values, the formatted strings, the kinds, and the run's settings and
environment (`environment()`), so a test can tell whether it may demand exact
equality (same environment) or must allow for another machine's rounding.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
import torch

from training.checkpoint import atomic_write_json
from training.errors import SnnMnistError

NumberKind = Literal["exact", "float", "accuracy", "training", "roundoff", "environment"]
KINDS: tuple[NumberKind, ...] = ("exact", "float", "accuracy", "training", "roundoff", "environment")
NUMBERS_FILE = "numbers.json"
SPAN = re.compile(r"<!-- num:([a-z0-9_]+) -->(.*?)<!-- /num -->")

# What "close enough on another machine" means, per kind (see the module docstring).
FLOAT_RELATIVE_TOLERANCE = 1e-3
TRAINING_RELATIVE_TOLERANCE = 5e-2
ACCURACY_TOLERANCE_POINTS = 1.0  # percentage points, for one-epoch test accuracies
ROUNDOFF_CEILING = 1e-5  # a rounding error (float32 or float64) must stay below this


class DocsNumbersError(SnnMnistError):
    """A doc quotes a key that was not measured, or a number cannot be formatted."""


Value = float | int | str | Sequence[float] | Sequence[int]


@dataclass
class NumberBook:
    """Measured values under keys, each with its print format and kind."""

    values: dict[str, Any] = field(default_factory=dict)
    formatted: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, NumberKind] = field(default_factory=dict)

    def add(self, key: str, value: Value, spec: str = "", kind: NumberKind = "exact") -> None:
        """Record `value` under `key`, printed with format `spec` (elementwise, comma-joined,
        for a sequence).  A key may be recorded once only: two sections never share one."""
        if not re.fullmatch(r"[a-z0-9_]+", key):
            raise DocsNumbersError(f"number key {key!r} must be lower-case letters, digits and _")
        if key in self.values:
            raise DocsNumbersError(f"number {key!r} recorded twice")
        if kind not in KINDS:
            raise DocsNumbersError(f"number {key!r}: unknown kind {kind!r}")
        self.values[key] = _plain(value)
        self.formatted[key] = format_value(value, spec)
        self.kinds[key] = kind

    def update(self, other: NumberBook) -> None:
        for key in other.values:
            if key in self.values:
                raise DocsNumbersError(f"number {key!r} recorded twice")
        self.values.update(other.values)
        self.formatted.update(other.formatted)
        self.kinds.update(other.kinds)


def _plain(value: Value) -> Any:
    """JSON-friendly copy: numpy and torch scalars become Python numbers."""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) or isinstance(value, np.ndarray):
        return [_plain(item) for item in value]  # type: ignore[arg-type]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)


def format_value(value: Value, spec: str) -> str:
    """format(value, spec); a sequence is formatted elementwise and joined with ', '.
    '-0' is printed as '0' (a rounded tiny negative is not a negative number)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) or isinstance(value, np.ndarray):
        return ", ".join(format_value(item, spec) for item in value)  # type: ignore[arg-type]
    text = format(value, spec)
    if re.fullmatch(r"-0(\.0*)?(e[+-]?0+)?", text):
        text = text[1:]
    return text


def environment(threads: int, seed: int) -> dict[str, Any]:
    """The settings and environment the numbers depend on: seed, threads, versions, and the
    CPU instruction set torch dispatches to (which decides float rounding in matmuls)."""
    import matplotlib  # here, not at import: `snn-mnist --help` need not load it

    try:
        import snntorch

        snntorch_version = snntorch.__version__
    except ImportError:  # pragma: no cover - explain needs snnTorch, see experiments.explain
        snntorch_version = "not installed"
    return {
        "seed": seed,
        "threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numba": numba.__version__,
            "numpy": np.__version__,
            "matplotlib": matplotlib.__version__,
            "snntorch": snntorch_version,
        },
    }


def write_numbers(path: Path, book: NumberBook, meta: Mapping[str, Any]) -> None:
    """numbers.json: {"meta": ..., "formatted": ..., "kinds": ..., "values": ...}."""
    atomic_write_json(
        Path(path),
        {"meta": dict(meta), "formatted": book.formatted, "kinds": book.kinds, "values": book.values},
    )


def read_numbers(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def span_keys(text: str) -> list[str]:
    """The keys of all number spans in a Markdown text, in order (repeats kept)."""
    return [match.group(1) for match in SPAN.finditer(text)]


def render_markdown(text: str, formatted: Mapping[str, str]) -> str:
    """Rewrite the value inside every `<!-- num:KEY -->...<!-- /num -->` span from `formatted`."""
    missing = sorted({key for key in span_keys(text) if key not in formatted})
    if missing:
        raise DocsNumbersError(
            f"the docs quote numbers that explain did not measure: {', '.join(missing)}"
        )
    return SPAN.sub(lambda match: f"<!-- num:{match.group(1)} -->{formatted[match.group(1)]}<!-- /num -->", text)


def render_docs(docs_dir: Path, formatted: Mapping[str, str]) -> list[Path]:
    """Re-render every Markdown file in `docs_dir` in place; returns the files that changed."""
    changed = []
    for path in sorted(Path(docs_dir).glob("*.md")):
        text = path.read_text(encoding="utf-8")
        rendered = render_markdown(text, formatted)
        if rendered != text:
            path.write_text(rendered, encoding="utf-8")
            changed.append(path)
    return changed


def same_environment(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two runs' meta agree on everything their float rounding depends on."""
    keys = ("seed", "threads", "cpu_capability", "machine", "versions")
    return all(a.get(key) == b.get(key) for key in keys)


def compare(
    committed: Mapping[str, Any], fresh: Mapping[str, Any], keys: Iterable[str] | None = None
) -> list[str]:
    """Differences between a committed numbers.json and a fresh one, one line each.

    Same environment: every formatted string must be equal.  Another environment:
    'environment' numbers are not compared, 'exact' ones must still be equal, 'float'
    ones agree within FLOAT_RELATIVE_TOLERANCE, 'training' ones within
    TRAINING_RELATIVE_TOLERANCE, 'accuracy' ones within ACCURACY_TOLERANCE_POINTS,
    and 'roundoff' ones must both lie below ROUNDOFF_CEILING.
    `keys` limits the comparison (default: every key of the fresh run).
    """
    strict = same_environment(committed["meta"], fresh["meta"])
    problems = []
    for key in fresh["formatted"] if keys is None else keys:
        if key not in committed["formatted"]:
            problems.append(f"{key}: not in the committed numbers (re-run snn-mnist explain --docs docs)")
            continue
        old, new = committed["formatted"][key], fresh["formatted"][key]
        kind = fresh["kinds"][key]
        if strict or kind == "exact":
            ok = old == new
        elif kind == "environment":
            ok = True
        elif kind in ("float", "training"):
            a, b = float(committed["values"][key]), float(fresh["values"][key])
            tolerance = FLOAT_RELATIVE_TOLERANCE if kind == "float" else TRAINING_RELATIVE_TOLERANCE
            ok = abs(a - b) <= tolerance * max(abs(a), abs(b))
        elif kind == "accuracy":
            ok = abs(float(committed["values"][key]) - float(fresh["values"][key])) <= ACCURACY_TOLERANCE_POINTS
        else:
            ok = max(abs(float(committed["values"][key])), abs(float(fresh["values"][key]))) < ROUNDOFF_CEILING
        if not ok:
            how = "exactly (same environment)" if strict or kind == "exact" else f"as a {kind} number"
            problems.append(f"{key}: docs say {old!r}, this run measured {new!r}; they must agree {how}")
    return problems
