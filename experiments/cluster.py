"""A time limit on reaching a Ray cluster (`--address HOST:PORT`).

`ray.init(address=...)` has no time limit of its own: an address that accepts connections
and never answers, or drops them, keeps it waiting for minutes, printing warnings.  So
before Ray is asked, `check_cluster_address` speaks the first words of the protocol Ray's
head (GCS) serves, gRPC over HTTP/2: it sends the HTTP/2 connection preface and waits for
the server's first frame, all within a stated time.  A head answers at once; an unreachable,
refusing or silent address ends in one `SnnMnistError` line naming the address and the fix.
"""

from __future__ import annotations

import argparse
import math
import socket
import time

from training.errors import SnnMnistError

DEFAULT_CONNECT_TIMEOUT_S = 30.0
# HTTP/2's client connection preface, then an empty SETTINGS frame (RFC 9113, section 3.4)
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


class ClusterUnreachable(SnnMnistError):
    """No Ray cluster answered at the address in the time allowed."""


def add_connect_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT_S, metavar="SECONDS",
        help=f"with --address: give up reaching the cluster after this many seconds (default: {DEFAULT_CONNECT_TIMEOUT_S:g})",
    )


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of 'HOST:PORT' or 'ray://HOST:PORT'; None for what Ray resolves itself ('auto')."""
    text = address.removeprefix("ray://")
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _fail(address: str, problem: str, timeout: float) -> ClusterUnreachable:
    return ClusterUnreachable(
        f"--address {address}: {problem}. Fix: check that the cluster's head runs there (`ray start --head "
        f"--port PORT` on it) and that HOST:PORT is right and reachable from here, or leave --address out to run "
        f"on this machine; a slow network may need a larger --connect-timeout (now {timeout:g} s)."
    )


def check_cluster_address(address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
    """Raise ClusterUnreachable unless a server at `address` answers the HTTP/2 preface within
    `timeout` seconds (resolving, connecting and answering together).  Addresses Ray resolves
    itself ('auto', 'local') are not checked."""
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"--connect-timeout must be a positive number of seconds, got {timeout!r}")
    where = split_address(address)
    if where is None:
        return
    host, port = where
    deadline = time.monotonic() + timeout
    try:
        candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise _fail(address, f"cannot resolve host {host!r} ({error.strerror})", timeout) from None
    problem = "no answer"
    for family, kind, protocol, _, socket_address in candidates:
        with socket.socket(family, kind, protocol) as connection:
            try:
                # a blocking wait with a timeout: Ctrl-C interrupts it at once (PEP 475)
                connection.settimeout(max(deadline - time.monotonic(), 1e-3))
                connection.connect(socket_address)
                connection.sendall(_HTTP2_PREFACE)
                connection.settimeout(max(deadline - time.monotonic(), 1e-3))
                connection.recv(9)  # any reply, or a close, is the server's to explain to Ray
                return
            except TimeoutError:
                raise _fail(address, f"no Ray cluster answered within {timeout:g} s", timeout) from None
            except ConnectionRefusedError:
                problem = "connection refused (nothing listens on that port)"
            except OSError as error:
                problem = f"cannot connect ({error.strerror or error})"
    raise _fail(address, problem, timeout)
