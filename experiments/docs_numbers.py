"""The numbers the teaching docs quote: collected, formatted, written, and put into the Markdown.

`snn-mnist explain` measures every number the docs in `docs/` quote and records
each in a `NumberBook` under a key, with the format the docs print it in and a
kind that says how exactly another machine reproduces it:

    exact       pure logic or bit-exact float arithmetic (spike times, snnTorch
                parity, closed forms, counts): the same string everywhere;
    float       a float computed through sums whose order may differ elsewhere
                (a gradient norm, a loss at initialisation): equal to
                FLOAT_RELATIVE_TOLERANCE;
    evaluation  an accuracy (or share of images) of a network that was not
                trained, its weights drawn from a seed: elsewhere only a rounding
                difference that moves a membrane across the threshold changes it,
                so it agrees to EVALUATION_TOLERANCE_POINTS;
    statistic   a mean or a standard deviation over seeds of training runs: a
                training run amplifies last-bit differences into another
                trajectory, so another machine draws these afresh; each carries
                its own tolerance, derived from its measured seed spread
                (`mean_tolerance`, `sd_tolerance`), written into numbers.json;
    roundoff    the size of a float rounding error (say 4e-16): its exact value
                depends on the order of operations, its size does not;
    environment the run's settings and library versions, quoted for the record,
                never compared.

The Markdown marks every quoted number as a span

    <!-- num:KEY -->VALUE<!-- /num -->

which renders on a code-hosting site as plain VALUE (HTML comments are not
shown).  `render_markdown` rewrites each VALUE from the book; a doc whose
rendering differs from its text quotes a stale number.  `numbers.json` holds
the raw values, the formatted strings, the kinds, the tolerances of the
statistics, every seed's value behind each statistic ("runs"), and the run's
settings and environment (`environment()`).
"""

from __future__ import annotations

import functools
import json
import math
import platform
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numba
import numpy as np
import torch

from training.checkpoint import atomic_write_json
from training.errors import SnnMnistError
from training.runtime import describe_machine, machine_description

NumberKind = Literal["exact", "float", "evaluation", "statistic", "roundoff", "environment"]
KINDS: tuple[NumberKind, ...] = ("exact", "float", "evaluation", "statistic", "roundoff", "environment")
NUMBERS_FILE = "numbers.json"
SPAN = re.compile(r"<!-- num:([a-z0-9_]+) -->(.*?)<!-- /num -->")

# What "the same number on another machine" means, per kind (see the module docstring).
FLOAT_RELATIVE_TOLERANCE = 1e-3
# An untrained network's accuracy: on five seeds, the native (AVX-512) run and the
# ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 run of the same machine gave identical
# accuracies and silent shares; perturbing every fc1 current by a relative 1e-6 (ten
# float32 roundings, far more than another kernel's reordering) moved seed 0's accuracy
# by 0.01 points.  Five images of 10,000 is therefore ample.
EVALUATION_TOLERANCE_POINTS = 0.05
ROUNDOFF_CEILING = 1e-5  # a rounding error (float32 or float64) must stay below this
# The chance that a correct statistic falls outside its interval on another machine
# (per number; a docs test compares a few dozen, so about one false alarm in 300 runs).
FALSE_ALARM = 1e-4


class DocsNumbersError(SnnMnistError):
    """A doc quotes a key that was not measured, or a number cannot be formatted."""


Value = float | int | str | Sequence[float] | Sequence[int]


def incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction
    (Lentz's method, as in Numerical Recipes' betacf); exact to about 1e-14."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below this point
        return 1.0 - incomplete_beta(1.0 - x, b, a)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * fraction


def student_t_cdf(x: float, degrees_of_freedom: float) -> float:
    """P(T <= x) for Student's t with d degrees of freedom: 1 - I_{d/(d+x^2)}(d/2, 1/2) / 2 for x >= 0."""
    d = float(degrees_of_freedom)
    tail = 0.5 * incomplete_beta(d / (d + x * x), d / 2, 0.5)
    return 1.0 - tail if x >= 0 else tail


def f_cdf(x: float, numerator_df: float, denominator_df: float) -> float:
    """P(F <= x) for the F distribution: I_{d1 x / (d1 x + d2)}(d1/2, d2/2)."""
    if x <= 0:
        return 0.0
    d1, d2 = float(numerator_df), float(denominator_df)
    return incomplete_beta(d1 * x / (d1 * x + d2), d1 / 2, d2 / 2)


def _quantile(cdf: Callable[[float], float], probability: float, low: float) -> float:
    """The x >= low with cdf(x) = probability, for an increasing cdf (bisection)."""
    high = max(2 * low, 1.0)
    while cdf(high) < probability:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2


@functools.lru_cache(maxsize=None)
def student_t_quantile(probability: float, degrees_of_freedom: float) -> float:
    """The x with P(T <= x) = probability, for probability in [0.5, 1)."""
    if not 0.5 <= probability < 1:
        raise DocsNumbersError(f"t quantile: probability must lie in [0.5, 1), got {probability!r}")
    return _quantile(lambda x: student_t_cdf(x, degrees_of_freedom), probability, 0.0)


@functools.lru_cache(maxsize=None)
def f_quantile(probability: float, numerator_df: float, denominator_df: float) -> float:
    """The x with P(F <= x) = probability, for probability in (0, 1)."""
    if not 0 < probability < 1:
        raise DocsNumbersError(f"F quantile: probability must lie in (0, 1), got {probability!r}")
    return _quantile(lambda x: f_cdf(x, numerator_df, denominator_df), probability, 0.0)


@dataclass(frozen=True)
class SeedRuns:
    """One quantity measured once per seed: the n values behind a mean and an sd."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise DocsNumbersError(f"a seed statistic needs at least 2 seeds, got {len(self.values)}")

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def sd(self) -> float:
        """Sample standard deviation (n - 1 in the denominator)."""
        return float(np.std(self.values, ddof=1))


@dataclass(frozen=True)
class Spread:
    """A seed standard deviation and its degrees of freedom (n - 1, or summed when pooled)."""

    sd: float
    degrees_of_freedom: int

    @staticmethod
    def of(runs: SeedRuns) -> Spread:
        return Spread(runs.sd, runs.n - 1)

    @staticmethod
    def pooled(family: Iterable[SeedRuns]) -> Spread:
        """sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)): one sd for settings that share a spread."""
        family = list(family)
        degrees = sum(runs.n - 1 for runs in family)
        return Spread(math.sqrt(sum((runs.n - 1) * runs.sd**2 for runs in family) / degrees), degrees)


def mean_interval(spread: Spread, committed_n: int, fresh_n: int) -> tuple[float, float]:
    """How far below and above the committed mean of `committed_n` runs another run's mean of
    `fresh_n` runs may lie.

    A training run amplifies the last-bit differences of another CPU's float32 kernels
    into another trajectory: for the same seed, two kernel paths of one machine differ
    about as much as two seeds do (docs/portability.md has the measurement).  So another
    machine draws its runs afresh from the distribution the committed runs sample, and
    (new mean - old mean) / (s sqrt(1/fresh_n + 1/committed_n)) follows Student's t with
    the degrees of freedom of s: the interval is the two-sided 1 - FALSE_ALARM
    prediction interval."""
    t = student_t_quantile(1 - FALSE_ALARM / 2, spread.degrees_of_freedom)
    half = t * spread.sd * math.sqrt(1.0 / fresh_n + 1.0 / committed_n)
    return half, half


def sd_interval(spread: Spread, fresh_degrees_of_freedom: int) -> tuple[float, float]:
    """How far below and above the committed sd another run's sample sd may lie: the ratio
    of the new sample variance to the old follows F(fresh df, committed df), and the
    interval holds its two-sided 1 - FALSE_ALARM range."""
    d_fresh, d_old = fresh_degrees_of_freedom, spread.degrees_of_freedom
    low = math.sqrt(f_quantile(FALSE_ALARM / 2, d_fresh, d_old))
    high = math.sqrt(f_quantile(1 - FALSE_ALARM / 2, d_fresh, d_old))
    return spread.sd * (1 - low), spread.sd * (high - 1)


@dataclass
class NumberBook:
    """Measured values under keys, each with its print format, kind and (statistics) interval."""

    values: dict[str, Any] = field(default_factory=dict)
    formatted: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, NumberKind] = field(default_factory=dict)
    tolerances: dict[str, list[float]] = field(default_factory=dict)
    runs: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(
        self,
        key: str,
        value: Value,
        spec: str = "",
        kind: NumberKind = "exact",
        tolerance: tuple[float, float] | None = None,
    ) -> None:
        """Record `value` under `key`, printed with format `spec` (elementwise, comma-joined,
        for a sequence).  A key may be recorded once only: two sections never share one.
        A 'statistic' needs its tolerance (below, above): another run may measure anything
        in [value - below, value + above]; no other kind takes one."""
        if not re.fullmatch(r"[a-z0-9_]+", key):
            raise DocsNumbersError(f"number key {key!r} must be lower-case letters, digits and _")
        if key in self.values:
            raise DocsNumbersError(f"number {key!r} recorded twice")
        if kind not in KINDS:
            raise DocsNumbersError(f"number {key!r}: unknown kind {kind!r}")
        if (kind == "statistic") != (tolerance is not None):
            raise DocsNumbersError(f"number {key!r}: a tolerance is given for, and only for, a statistic")
        if tolerance is not None and not all(t >= 0 and math.isfinite(t) for t in tolerance):
            raise DocsNumbersError(f"number {key!r}: tolerance must be non-negative and finite, got {tolerance!r}")
        self.values[key] = _plain(value)
        self.formatted[key] = format_value(value, spec)
        self.kinds[key] = kind
        if tolerance is not None:
            self.tolerances[key] = [float(tolerance[0]), float(tolerance[1])]

    def add_seed_runs(
        self,
        key: str,
        runs: SeedRuns,
        spec: str,
        fresh_n: int,
        family: Spread | None = None,
        by_path: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        """Record `key`_mean and `key`_sd of the runs as statistics, with the intervals
        another run of `fresh_n` runs must fall in, and the runs themselves (`by_path`:
        the same runs, per kernel path, in seed order).

        The mean's interval uses `family`, the pooled spread of settings that share one
        (more degrees of freedom than one setting's n - 1), when given."""
        self.add(f"{key}_mean", runs.mean, spec, "statistic", mean_interval(family or Spread.of(runs), runs.n, fresh_n))
        self.add(f"{key}_sd", runs.sd, spec, "statistic", sd_interval(Spread.of(runs), fresh_n - 1))
        self.runs[key] = {path: [float(v) for v in values] for path, values in (by_path or {"": runs.values}).items()}

    def update(self, other: NumberBook) -> None:
        for key in other.values:
            if key in self.values:
                raise DocsNumbersError(f"number {key!r} recorded twice")
        self.values.update(other.values)
        self.formatted.update(other.formatted)
        self.kinds.update(other.kinds)
        self.tolerances.update(other.tolerances)
        self.runs.update(other.runs)


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
    machine (CPU model, the instruction set torch dispatches to, forced kernel paths)."""
    import matplotlib  # here, not at import: `snn-mnist --help` need not load it

    try:
        import snntorch

        snntorch_version = snntorch.__version__
    except ImportError:  # pragma: no cover - explain needs snnTorch, see experiments.explain
        snntorch_version = "not installed"
    machine = machine_description()
    return {
        "seed": seed,
        "threads": threads,
        "cpu_capability": machine["torch_cpu_capability"],
        "machine": platform.machine(),
        "machine_description": describe_machine(machine),
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
    """numbers.json: {"meta", "formatted", "kinds", "tolerances", "values", "runs"}."""
    atomic_write_json(
        Path(path),
        {
            "meta": dict(meta),
            "formatted": book.formatted,
            "kinds": book.kinds,
            "tolerances": book.tolerances,
            "values": book.values,
            "runs": book.runs,
        },
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


def _range(kind: NumberKind, value: float, tolerance: Sequence[float] | None) -> tuple[float, float]:
    """(low, high) another run may measure for a number of `kind` committed as `value`."""
    if kind == "float":
        return value - FLOAT_RELATIVE_TOLERANCE * abs(value), value + FLOAT_RELATIVE_TOLERANCE * abs(value)
    if kind == "evaluation":
        return value - EVALUATION_TOLERANCE_POINTS, value + EVALUATION_TOLERANCE_POINTS
    if kind == "statistic":
        assert tolerance is not None
        below, above = tolerance
        return value - below, value + above
    if kind == "roundoff":
        return -ROUNDOFF_CEILING, ROUNDOFF_CEILING  # any size below the ceiling
    return value, value  # exact


def allowed_range(numbers: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    """The values another run may measure for `key`, as (low, high) around numbers' value;
    None where nothing is compared ('environment') or the value is not one number.
    'exact' numbers are compared as printed strings, not by this range."""
    kind, value = numbers["kinds"][key], numbers["values"][key]
    if kind == "environment" or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return _range(kind, float(value), numbers["tolerances"].get(key))


def _within(committed: Mapping[str, Any], key: str, old: Any, new: Any) -> bool:
    """Whether `new` (a number or a list) lies in the committed range of `key` (elementwise)."""
    if isinstance(old, list):
        return len(old) == len(new) and all(_within(committed, key, a, b) for a, b in zip(old, new, strict=True))
    kind = committed["kinds"][key]
    if kind == "roundoff":  # both must be rounding errors
        return max(abs(float(old)), abs(float(new))) < ROUNDOFF_CEILING
    low, high = _range(kind, float(old), committed["tolerances"].get(key))
    return low <= float(new) <= high


def compare(
    committed: Mapping[str, Any], fresh: Mapping[str, Any], keys: Iterable[str] | None = None
) -> list[str]:
    """Differences between a committed numbers.json and a fresh one, one line each, by kind
    (the module docstring): 'exact' numbers must print the same, 'environment' ones are
    not compared, and every other one must lie in the committed range (`allowed_range`;
    elementwise for a list).  The same rules hold on every machine: the machine is
    recorded, never trusted to tell two kernel paths apart (two CPUs with the same
    instruction set can still round differently).  `keys` limits the comparison
    (default: every key of the fresh run)."""
    problems = []
    for key in fresh["formatted"] if keys is None else keys:
        if key not in committed["formatted"]:
            problems.append(f"{key}: not in the committed numbers (re-run snn-mnist explain --docs docs)")
            continue
        old, new = committed["formatted"][key], fresh["formatted"][key]
        kind = committed["kinds"][key]
        if fresh["kinds"][key] != kind:
            problems.append(f"{key}: committed as {kind}, measured now as {fresh['kinds'][key]}")
        elif kind == "exact" and old != new:
            problems.append(f"{key}: docs say {old!r}, this run measured {new!r}; they must agree exactly")
        elif kind not in ("exact", "environment") and not _within(
            committed, key, committed["values"][key], fresh["values"][key]
        ):
            span = allowed_range(committed, key)
            where = f"in [{span[0]:.4g}, {span[1]:.4g}]" if span is not None else "elementwise within tolerance"
            problems.append(f"{key}: docs say {old!r}, this run measured {new!r}; a {kind} must lie {where}")
    return problems
