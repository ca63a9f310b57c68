"""The teaching docs in docs/: every quoted number is measured by `snn-mnist explain`, every
code block runs, and a stale number fails a test.

How (see docs/README.md and experiments/docs_numbers.py):
  * `snn-mnist explain --quick` runs here; its numbers must equal the committed
    docs/numbers.json (exactly on the same machine and versions, by kind elsewhere);
  * every `<!-- num:KEY -->VALUE<!-- /num -->` span in docs/*.md must hold the committed
    number of KEY, and no decimal, percentage or power of ten may appear outside a span;
  * the study's point of the one-epoch sweep (fast sigmoid, slope 25) is re-trained here;
    SNN_MNIST_DOCS_FULL=1 re-runs the whole of explain and compares every number;
  * every python block runs (each page in one namespace, in a temporary folder), excerpts
    are verbatim copies of their source, bash blocks parse, figures and named tests exist.
"""

from __future__ import annotations

import __future__
import math
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import pytest
import torch

from experiments import docs_numbers
from experiments.cli import build_parser, main
from experiments.docs_numbers import (
    NUMBERS_FILE,
    SPAN,
    DocsNumbersError,
    NumberBook,
    compare,
    environment,
    format_value,
    read_numbers,
    render_markdown,
    span_keys,
)
from experiments.explain import (
    FIGURES,
    QUICK_FIGURES,
    ExplainConfig,
    scale_tag,
    sweep_key,
    sweep_runs,
    train_once,
)
from training.data import DATA_ENV_VAR, load_mnist
from training.runtime import configure_threads

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = REPO_ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FIX = "Fix: run `snn-mnist explain --out explain --docs docs` and commit docs/."
FULL = os.environ.get("SNN_MNIST_DOCS_FULL", "") not in ("", "0")


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # 1-based line of the opening fence
    excerpt_of: str | None  # source file the block claims to copy verbatim


def fenced_blocks(text: str) -> list[Block]:
    """The ``` fenced blocks of a Markdown text, with the excerpt marker on the line before."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            language, start = line[3:].strip(), index
            index += 1
            body = []
            while not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            previous = lines[start - 1].strip() if start else ""
            marker = re.fullmatch(r"<!-- excerpt: (\S+) -->", previous)
            blocks.append(Block(language, "\n".join(body) + "\n", start + 1, marker.group(1) if marker else None))
        index += 1
    return blocks


def prose(text: str) -> str:
    """The text a reader sees as prose: without fenced blocks, number spans, inline code,
    HTML comments and link targets."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = SPAN.sub(" ", text)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    return re.sub(r"\]\([^)]*\)", "]", text)


def committed() -> dict[str, Any]:
    return read_numbers(DOCS / NUMBERS_FILE)


@pytest.fixture
def restore_threads() -> Iterator[None]:
    """explain sets torch's and Numba's thread counts for the process; put them back."""
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    yield
    torch.set_num_threads(torch_threads)
    numba.set_num_threads(numba_threads)


@pytest.fixture(scope="module")
def quick_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """numbers.json of `snn-mnist explain --quick`, run once for this module, as the docs' run was."""
    meta = committed()["meta"]
    out = tmp_path_factory.mktemp("explain-quick")
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    try:
        code = main(
            ["explain", "--quick", "--out", str(out), "--data-dir", str(mnist_dir),
             "--threads", str(meta["threads"]), "--seed", str(meta["seed"])]
        )
    finally:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(numba_threads)
    assert code == 0
    for name in QUICK_FIGURES:
        assert (out / "figures" / name).stat().st_size > 10_000, name
    return read_numbers(out / NUMBERS_FILE)


# --------------------------------------------------------------------------- numbers


def test_committed_numbers_come_from_one_full_explain_run() -> None:
    """docs/numbers.json is a full run (not --quick) with every sweep run and every figure."""
    numbers = committed()
    assert numbers["meta"]["quick"] is False
    for key, *_ in sweep_runs(ExplainConfig(seed=numbers["meta"]["seed"])):
        assert key in numbers["formatted"], key
    for name in FIGURES:
        assert (DOCS / "figures" / name).is_file(), name
    assert set(numbers["formatted"]) == set(numbers["kinds"]) == set(numbers["values"])


def test_quick_explain_reproduces_the_committed_numbers(quick_run: dict[str, Any]) -> None:
    """Every number explain --quick measures now equals the committed one (chapters 1-5)."""
    problems = compare(committed(), quick_run)
    assert not problems, "the docs' numbers are stale:\n" + "\n".join(problems) + "\n" + FIX
    assert len(quick_run["formatted"]) > 100


def test_every_span_holds_the_committed_number() -> None:
    """Each <!-- num:KEY --> span holds exactly the committed value of KEY."""
    formatted = committed()["formatted"]
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        unknown = sorted(set(span_keys(text)) - set(formatted))
        assert not unknown, f"{page.name} quotes numbers explain does not measure: {unknown}"
        stale = [
            f"{page.name}: {match.group(1)} says {match.group(2)!r}, numbers.json {formatted[match.group(1)]!r}"
            for match in SPAN.finditer(text)
            if match.group(2) != formatted[match.group(1)]
        ]
        assert not stale, "\n".join(stale) + "\n" + FIX


def test_every_measured_number_is_quoted() -> None:
    """explain measures nothing the docs do not quote (numbers.json has no orphans)."""
    quoted = {key for page in PAGES for key in span_keys(page.read_text(encoding="utf-8"))}
    orphans = sorted(set(committed()["formatted"]) - quoted)
    assert not orphans, f"measured but never quoted: {orphans}"


RESULT_LIKE = [
    (re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])"), "a decimal number"),
    (re.compile(r"\d\s*%"), "a percentage"),
    (re.compile(r"\d[eE][-+]?\d"), "a power of ten"),
]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_result_like_number_outside_a_span(page: Path) -> None:
    """Prose may not state a decimal, a percentage or a power of ten except inside a number
    span (measured) or inline code (a setting). Version numbers like 1.0.0 are allowed."""
    text = prose(page.read_text(encoding="utf-8"))
    found = [
        f"{page.name}: {what} {match.group(0)!r} in ...{text[max(0, match.start() - 40):match.end() + 20]!r}..."
        for pattern, what in RESULT_LIKE
        for match in pattern.finditer(text)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_line_starts_with_a_span(page: Path) -> None:
    """In CommonMark (and so on code-hosting sites) a line starting with `<!--` opens an HTML
    block: it would cut the paragraph there and print the rest of the line unformatted.
    A number span must therefore never begin a line outside a code block."""
    inside, bad = False, []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            inside = not inside
        elif not inside and re.match(r"\s*<!-- num:", line):
            bad.append(f"{page.name}:{number}: {line[:60]}")
    assert not bad, "join these lines to the line above:\n" + "\n".join(bad)


def test_sweep_point_of_the_study_reproduces(mnist_dir: Path, restore_threads: None) -> None:
    """Re-train chapter 6's study setting (fast sigmoid, slope 25, one epoch, full MNIST) on the
    committed seed and thread count: its test accuracy equals the quoted one."""
    numbers = committed()
    meta = numbers["meta"]
    configure_threads(meta["threads"])
    train_split, test_split = load_mnist("train", mnist_dir), load_mnist("test", mnist_dir)
    _, accuracy = train_once(train_split, test_split, "fast_sigmoid", 25.0, meta["seed"])
    book = NumberBook()
    key = sweep_key("fast_sigmoid", 25.0)
    book.add(key, accuracy, ".2f", "accuracy")
    fresh = {"meta": environment(meta["threads"], meta["seed"]), **book.__dict__}
    problems = compare(numbers, fresh, keys=[key])
    assert not problems, "\n".join(problems) + "\n" + FIX


@pytest.mark.skipif(not FULL, reason="the full explain run (a dozen epochs) runs only with SNN_MNIST_DOCS_FULL=1")
def test_full_explain_reproduces_every_number(mnist_dir: Path, tmp_path: Path, restore_threads: None) -> None:
    """SNN_MNIST_DOCS_FULL=1: the whole of explain, the sweep included, against the docs."""
    meta = committed()["meta"]
    assert main(["explain", "--out", str(tmp_path), "--data-dir", str(mnist_dir),
                 "--threads", str(meta["threads"]), "--seed", str(meta["seed"])]) == 0
    fresh = read_numbers(tmp_path / NUMBERS_FILE)
    problems = compare(committed(), fresh)
    assert not problems, "\n".join(problems) + "\n" + FIX
    assert set(fresh["formatted"]) == set(committed()["formatted"])


def test_prose_claims_hold_for_the_committed_numbers() -> None:
    """The qualitative statements of chapters 2 and 6, as inequalities on the committed numbers."""
    v = committed()["values"]
    config = ExplainConfig(seed=committed()["meta"]["seed"])
    # 02: zero gradient, weights unchanged, accuracy stays at the untrained network's, at chance
    assert v["zero_grad_grad_sum_heaviside"] == 0 and v["zero_grad_grad_sum_fast_sigmoid"] > 0
    assert v["tiny_heaviside_max_weight_change"] == 0 < v["tiny_fast_sigmoid_max_weight_change"]
    assert v["tiny_heaviside_acc"] == v["zero_grad_initial_acc"] < 15
    assert v["tiny_fast_sigmoid_acc"] > 50
    assert v["zero_grad_initial_loss_heaviside"] == v["zero_grad_initial_loss_fast_sigmoid"]
    # 03: the measured shapes are the closed forms
    for slope in config.sweep_slopes:
        tag = f"shape_fast_sigmoid_{scale_tag(slope)}"
        assert v[f"{tag}_peak"] == 1.0
        assert math.isclose(v[f"{tag}_hwhm"], (math.sqrt(2) - 1) / slope, rel_tol=1e-9)
        assert math.isclose(v[f"{tag}_area"], 2 / slope, rel_tol=1e-4)
    for alpha in config.sweep_alphas:
        tag = f"shape_atan_{scale_tag(alpha)}"
        assert v[f"{tag}_peak"] == alpha / 2
        assert math.isclose(v[f"{tag}_hwhm"], 2 / (math.pi * alpha), rel_tol=1e-9)
        assert math.isclose(v[f"{tag}_area"], 1.0, rel_tol=1e-4)
    # 04: the reset path flips the sign, and explodes for a tall surrogate
    assert v["bptt_factor_detached"] > 0 > v["bptt_factor_attached"] > -1 > v["bptt_factor_attached_atan8"]
    # 06: a full epoch of the true gradient stays put; the wide shapes agree within the seed range;
    # the narrowest of each family learn least
    assert v[sweep_key("heaviside", None)] == v["zero_grad_initial_acc"]
    slopes = {s: v[sweep_key("fast_sigmoid", s)] for s in config.sweep_slopes}
    alphas = {a: v[sweep_key("atan", a)] for a in config.sweep_alphas}
    wide = [acc for s, acc in slopes.items() if s <= 25] + [acc for a, acc in alphas.items() if a <= 8]
    assert max(wide) - min(wide) <= v["sweep_spread_points"] + 1e-9
    assert slopes[500.0] < slopes[100.0] < min(wide)
    assert alphas[32.0] < min(acc for a, acc in alphas.items() if a <= 8)
    assert v[sweep_key("fast_sigmoid", 25.0)] == slopes[25.0]


# --------------------------------------------------------------------------- code blocks


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_blocks_run(page: Path, mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every python block runs, in order, in one namespace per page, in a temporary folder;
    text blocks hold equations (no numbers with decimals); bash blocks are valid commands."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV_VAR, str(mnist_dir))
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}"}
    for block in fenced_blocks(page.read_text(encoding="utf-8")):
        where = f"{page.name}:{block.line}"
        if block.language == "python":
            flags = __future__.annotations.compiler_flag  # excerpts' annotations stay unevaluated
            exec(compile(block.code, where, "exec", flags=flags, dont_inherit=True), namespace)
        elif block.language == "text":
            assert not re.search(r"\d\.\d|\d\s*%", block.code), f"{where}: a number in an equation block"
        elif block.language == "bash":
            check_commands(block.code, where)
        else:
            pytest.fail(f"{where}: fenced block of language {block.language!r}; use python, text or bash")


def check_commands(code: str, where: str) -> None:
    """Each line: `snn-mnist ...` (must parse) or `[VAR=value] python -m pytest PATH...` (paths exist)."""
    for line in filter(None, (raw.strip() for raw in code.splitlines())):
        words = shlex.split(line)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if words[:1] == ["snn-mnist"]:
            build_parser().parse_args(words[1:])
        elif words[:3] == ["python", "-m", "pytest"]:
            for path in words[3:]:
                assert (REPO_ROOT / path).exists(), f"{where}: {path} does not exist"
        else:
            pytest.fail(f"{where}: unexpected command {line!r}")


def test_excerpts_are_verbatim_copies() -> None:
    """A block marked <!-- excerpt: FILE --> appears character for character in FILE."""
    count = 0
    for page in PAGES:
        for block in fenced_blocks(page.read_text(encoding="utf-8")):
            if block.excerpt_of is not None:
                source = (REPO_ROOT / block.excerpt_of).read_text(encoding="utf-8")
                assert block.code in source, f"{page.name}:{block.line} is no longer a copy of {block.excerpt_of}"
                count += 1
    assert count >= 2


def test_figures_and_named_tests_exist() -> None:
    """Every image the docs show is one explain draws, and every figure is shown; every
    `tests/...py::test_...` the docs name exists."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    shown = set(re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", text))
    assert shown == set(FIGURES)
    named = set(re.findall(r"(tests/test_\w+\.py)::(test_\w+)", text))
    assert len(named) >= 10
    for path, name in sorted(named):
        assert re.search(rf"^def {name}\(", (REPO_ROOT / path).read_text(encoding="utf-8"), re.M), f"{path}::{name}"


def test_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name


# --------------------------------------------------------------------------- the machinery


def test_render_rewrites_spans_and_refuses_unknown_keys() -> None:
    text = "a <!-- num:x -->1.0<!-- /num --> b <!-- num:y -->old<!-- /num -->"
    assert render_markdown(text, {"x": "2.5", "y": "7"}) == (
        "a <!-- num:x -->2.5<!-- /num --> b <!-- num:y -->7<!-- /num -->"
    )
    with pytest.raises(DocsNumbersError, match="y"):
        render_markdown(text, {"x": "1.0"})


def test_number_book_formats_and_refuses_duplicates() -> None:
    book = NumberBook()
    book.add("a", [3, 8, 12], "d")
    book.add("b", -1e-20, ".2f")
    book.add("c", 0.123456, ".3g", "float")
    assert book.formatted == {"a": "3, 8, 12", "b": "0.00", "c": "0.123"}
    assert format_value(-0.0, "g") == "0"
    with pytest.raises(DocsNumbersError, match="twice"):
        book.add("a", 1, "d")
    with pytest.raises(DocsNumbersError, match="kind"):
        book.add("d", 1, "d", "approximate")  # type: ignore[arg-type]


def test_compare_is_exact_on_the_same_machine_and_by_kind_elsewhere() -> None:
    """Same environment: any change fails. Another one: exact kinds must match, accuracies
    within a point, floats within 1e-3 relative, training numbers within 5e-2 relative,
    roundoff below the ceiling, and the environment itself is not compared."""
    meta = environment(1, 0)
    old = {"meta": meta, "formatted": {}, "kinds": {}, "values": {}}
    new = {"meta": meta, "formatted": {}, "kinds": {}, "values": {}}
    entries = {"e": ("exact", 3, "3"), "a": ("accuracy", 95.77, "95.77"), "f": ("float", 681.0, "681"),
               "r": ("roundoff", 1.8e-15, "1.8e-15"), "v": ("environment", "2.0", "2.0"),
               "t": ("training", 0.0400, "0.04")}
    for key, (kind, value, text) in entries.items():
        for numbers in (old, new):
            numbers["kinds"][key], numbers["values"][key], numbers["formatted"][key] = kind, value, text
    assert compare(old, new) == []
    new["values"]["a"], new["formatted"]["a"] = 95.70, "95.70"
    assert [p.split(":")[0] for p in compare(old, new)] == ["a"]
    elsewhere = {**new, "meta": {**meta, "cpu_capability": "OTHER"}}
    assert compare(old, elsewhere) == []
    for key, value, text in (("e", 4, "4"), ("a", 93.0, "93.00"), ("f", 690.0, "690"), ("r", 1e-3, "1.0e-03"),
                             ("t", 0.045, "0.045")):
        changed = {**elsewhere, "values": {**elsewhere["values"], key: value},
                   "formatted": {**elsewhere["formatted"], key: text}}
        assert [p.split(":")[0] for p in compare(old, changed)] == [key]
    assert docs_numbers.same_environment(meta, environment(1, 0))


def test_explain_refuses_docs_with_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--docs rewrites every number, so it needs the sweep: --quick --docs is one clear error."""
    assert main(["explain", "--quick", "--docs", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "--docs needs every number" in capsys.readouterr().err
