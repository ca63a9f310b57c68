"""One run per output folder: an OS lock while a command writes into `--out`, and the run's identity.

`hold_output_folder(out)` takes an exclusive `fcntl.flock` on `out/.snn-mnist.lock` for as long
as a command writes there.  The operating system releases it when the process ends, however
it ends (an exception, Ctrl-C, SIGKILL), so no stale lock outlives its run.  A second command
into the same folder stops at once with one line naming the holder's process id and the fix.

`run_identity` is what a run records about itself once: its settings, the checksums of the data
files it read and the code version.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from training.checkpoint import remove_stale_temporary_files
from training.errors import SnnMnistError

LOCK_FILE = ".snn-mnist.lock"
RUN_FILE = "run.json"  # a run's identity, written once
# flock's answers on a file system that has no locks
UNSUPPORTED_LOCK_ERRORS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class OutputFolderBusy(SnnMnistError):
    """Another process holds the output folder's lock."""


def _lock_holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text(encoding="utf-8").strip()
    except OSError:
        return "another process"
    return f"process {text}" if text.isdigit() else "another process"


@contextlib.contextmanager
def hold_output_folder(folder: Path, flag: str = "--out") -> Iterator[Path]:
    """Hold `folder`'s lock (creating the folder) until the block ends; OutputFolderBusy if another
    process holds it.  On release the lock file goes, and the folder too if this run created it
    and left nothing in it."""
    import fcntl  # POSIX only; imported here so that the module imports everywhere

    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_FILE
    while True:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno in UNSUPPORTED_LOCK_ERRORS:
                # a file system without locks (some network and FUSE mounts): run, but say so
                print(
                    f"snn-mnist: warning: cannot lock {flag} {folder} ({error.strerror}); "
                    "a second run into it at the same time would not be stopped",
                    file=sys.stderr,
                )
                yield folder
                return
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise OutputFolderBusy(
                f"{flag} {folder} is in use by {_lock_holder(lock_path)} (another snn-mnist run writing there). "
                f"Fix: wait for that run to finish, or pass another {flag} folder."
            ) from None
        # The holder before us may have removed the file between our open and our lock: then we
        # hold a lock on a file nobody else can see, so try again on the one at the path.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        # nobody else writes here now: a temporary file left is a killed run's
        remove_stale_temporary_files(folder)
        yield folder
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        os.close(descriptor)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a run that stopped before writing anything


def code_version() -> str:
    """The package version, and the git commit of the source tree when it is a checkout."""
    from experiments import __version__

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return __version__
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__} (git {commit}{', with uncommitted changes' if dirty else ''})"


def file_checksum(path: Path) -> str:
    """SHA-256 of a file's content, in hex; of the uncompressed bytes for a .gz file, so that
    the same data gzip-compressed or not has one checksum."""
    digest = hashlib.sha256()
    opener = gzip.open if Path(path).suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_identity(command: str, settings: Mapping[str, Any], data_files: Mapping[str, Path]) -> dict[str, Any]:
    """What a run records about itself once: the command, its settings, the SHA-256 of every
    data file it read (by name) and the code version."""
    return {
        "command": command,
        "settings": dict(settings),
        "data": {name: file_checksum(path) for name, path in sorted(data_files.items())},
        "code_version": code_version(),
    }


Handler = Callable[[argparse.Namespace], int]


def writes_output_folder(handler: Handler) -> Handler:
    """A command handler that holds its --out folder's lock while it runs (`hold_output_folder`)."""

    @functools.wraps(handler)
    def locked(args: argparse.Namespace) -> int:
        out = Path(args.out)
        with hold_output_folder(out):
            other_data = check_recorded_data(out, args)
            code = handler(args)
            if code == 0 and (other_data or not (out / RUN_FILE).exists()):
                record_run(out, args)
            return code

    return locked


def _data_files(args: argparse.Namespace) -> dict[str, Path]:
    """The MNIST files this command reads, where they can be named without reading or downloading
    anything; {} where not (no data flag, a missing file, an empty cache)."""
    from training.data import MnistDataError, mnist_files

    if not hasattr(args, "data_dir"):
        return {}
    try:
        files = mnist_files(args.data_dir)
    except MnistDataError:
        return {}
    return files if all(path.is_file() for path in files.values()) else {}


def check_recorded_data(out: Path, args: argparse.Namespace) -> bool:
    """A run recorded in `out/run.json` was made from other MNIST files than this command would
    read: refused (ValueError), unless the command's --force rebuilds everything, then True."""
    try:
        recorded = json.loads((out / RUN_FILE).read_text(encoding="utf-8")).get("data") or {}
    except (OSError, ValueError, AttributeError):
        return False
    files = _data_files(args)
    if not recorded or not files:
        return False
    changed = sorted(name for name, path in files.items() if name in recorded and recorded[name] != file_checksum(path))
    if not changed:
        return False
    if getattr(args, "force", False):
        return True
    where = f"--data-dir {args.data_dir}" if args.data_dir is not None else "the MNIST data this command reads"
    rebuild = ", --force to rebuild it from this data" if hasattr(args, "force") else ""
    raise ValueError(
        f"--out {out} holds a run made from other MNIST files than {where} ({', '.join(changed)} differ by SHA-256), "
        f"so its results would mix the two. Fix: pass the run's --data-dir{rebuild}, or another --out folder."
    )


def command_settings(args: argparse.Namespace) -> dict[str, Any]:
    """A command's parsed flags as JSON values (paths as text), without the handler."""
    settings = {key: value for key, value in vars(args).items() if key != "handler" and not callable(value)}
    return json.loads(json.dumps(settings, default=str))


def record_run(out: Path, args: argparse.Namespace) -> None:
    """Write `out/run.json`, the run's identity: the command, its flags, the checksums of the MNIST
    files it read and the code version."""
    from training.checkpoint import atomic_write_json

    files = _data_files(args)
    atomic_write_json(out / RUN_FILE, run_identity(str(getattr(args, "command", "")), command_settings(args), files))
