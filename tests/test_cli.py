"""The `snn-mnist` command line: --help and --version, in process and as `python -m experiments`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import experiments
from experiments.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_main(argv: list[str]) -> int:
    """Call `main(argv)`; argparse's exits for --help/--version come back as the exit code."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m experiments ARGS` from the repository root, importing this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    """--help exits 0 and prints a usage line for snn-mnist that lists --version."""
    assert run_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: snn-mnist")
    assert "--version" in out and "Leaky integrate-and-fire" in out


def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    """--version exits 0 and prints 'snn-mnist <version>'."""
    assert run_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"snn-mnist {experiments.__version__}"


def test_no_arguments_prints_help_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    """Bare `snn-mnist` prints the help and exits 0."""
    assert run_main([]) == 0
    assert capsys.readouterr().out.startswith("usage: snn-mnist")


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown flag exits 2 with argparse's error on stderr."""
    assert run_main(["--no-such-flag"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_version_matches_installed_metadata() -> None:
    """The reported version is pyproject's version when the project is installed."""
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert experiments.__version__ in (declared, "0.0.0+unknown")


def test_console_script_is_declared() -> None:
    """pyproject declares the `snn-mnist` console script as experiments.cli:main."""
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"snn-mnist": "experiments.cli:main"}


def test_python_dash_m_version() -> None:
    """`python -m experiments --version` works in a fresh interpreter."""
    result = run_module("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"snn-mnist {experiments.__version__}"


def test_python_dash_m_help() -> None:
    """`python -m experiments --help` works in a fresh interpreter."""
    result = run_module("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: snn-mnist")
