"""Finding 1 of issue 31: an unreachable --address hung for minutes.  Now reaching a cluster has
a time limit (--connect-timeout), and failing it is one line naming the address and the fix."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.cluster import ClusterUnreachable, check_cluster_address


ACCEPTED = threading.Event()  # set by the silent server when it has accepted a connection


@pytest.fixture
def silent_server() -> Iterator[str]:
    """HOST:PORT of a loopback-only server that accepts connections and never answers; stopped after."""
    ACCEPTED.clear()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            held.append(connection)  # kept open, never read, never answered
            ACCEPTED.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        server.close()


@pytest.mark.parametrize(
    "command",
    [
        ["sweep", "--param", "lr=1e-3,2e-3", "--seeds", "0"],
        ["reproduce", "--quick", "--no-progress"],
        ["plasticity-study", "--dose-response", "--seeds", "0", "--no-progress"],
    ],
    ids=lambda command: command[0],
)
def test_a_silent_address_fails_within_the_connect_timeout(
    command: list[str], silent_server: str, tmp_path: Path, mnist_dir: Path, capsys
) -> None:
    started = time.perf_counter()
    code = main([*command, "--address", silent_server, "--connect-timeout", "1", "--out", str(tmp_path / "out"),
                 "--data-dir", str(mnist_dir)])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("snn-mnist: error: "), err
    assert f"--address {silent_server}: no Ray cluster answered within 1 s" in lines[0]
    assert "Fix:" in lines[0] and "--connect-timeout" in lines[0]
    assert 0.9 <= elapsed < 10


def test_ctrl_c_stops_a_run_waiting_for_the_cluster_at_once(silent_server: str, tmp_path: Path, mnist_dir: Path) -> None:
    """SIGINT was ignored for 15 s (once 28 s) while Ray waited for the address."""
    import os
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments", "sweep", "--param", "lr=1e-3", "--seeds", "0", "--address", silent_server,
         "--connect-timeout", "120", "--out", str(tmp_path / "out"), "--data-dir", str(mnist_dir)],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert ACCEPTED.wait(timeout=120), "the command never reached the address"
        time.sleep(0.5)
        interrupted = time.perf_counter()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        assert time.perf_counter() - interrupted < 3
        assert process.returncode == 130 and "snn-mnist: interrupted" in err and "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_refused_and_unresolvable_addresses_are_named() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ClusterUnreachable, match=f"--address 127.0.0.1:{port}: connection refused"):
        check_cluster_address(f"127.0.0.1:{port}", 5)
    with pytest.raises(ClusterUnreachable, match="cannot resolve host 'nonexistent-host.invalid'"):
        check_cluster_address("nonexistent-host.invalid:6379", 5)


def test_a_server_that_answers_passes_and_auto_is_left_to_ray() -> None:
    """A server that answers the preface (as Ray's gRPC head does with its SETTINGS frame) passes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(64)
            connection.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        check_cluster_address(f"127.0.0.1:{server.getsockname()[1]}", 5)
    finally:
        thread.join(timeout=5)
        server.close()
    check_cluster_address("auto", 5)
    with pytest.raises(ValueError, match="--connect-timeout must be a positive number"):
        check_cluster_address("127.0.0.1:1", 0)
