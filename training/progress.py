"""Progress reporting that reads well both in a terminal and in a log file.

In a terminal, `progress_bar` returns an ordinary tqdm bar.  When stderr is not
a terminal (CI, `nohup`, a cluster job, `2>&1 | tee log`), a tqdm bar would fill
the log with thousands of carriage-return frames, so `progress_bar` returns a
`LineProgress` instead, which writes plain lines to stderr:

* at most one heartbeat line per `heartbeat_s` seconds (60 by default) while
  the bar runs, so an hour-long job is not silent; a bar that finishes sooner
  never prints one:

      stdp train: 12,000/60,000 img (20%), 31.2 img/s, ETA 26 min, spikes=14.2

* one summary line when it closes (`summary=True`), with the figures the bar
  would have shown; call sites that already log their own line per epoch or
  stage pass `summary=False` and put the figures into that line instead:

      snnTorch epoch 1: 469 it in 4 min 58 s, 1.57 it/s

`LineProgress` implements the part of tqdm's interface this project uses:
iteration, `update`, `set_postfix`, `write`, `close` and the context manager.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from types import TracebackType
from typing import Any, Protocol, TextIO

from tqdm.auto import tqdm

HEARTBEAT_SECONDS = 60.0


class ProgressBar(Protocol):
    """What the code may call on a bar: tqdm and `LineProgress` both provide it."""

    def __iter__(self) -> Iterator[Any]: ...

    def update(self, n: float = 1) -> Any: ...

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None: ...

    def write(self, s: str, file: TextIO | None = None, end: str = "\n", nolock: bool = False) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> ProgressBar: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> Any: ...


def is_terminal(stream: TextIO) -> bool:
    """True when `stream` is an interactive terminal (False for files, pipes, captured streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def format_duration(seconds: float) -> str:
    """45 s, 4 min 58 s, 26 min, 2.3 h: precise for short spans, short for long ones."""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_rate(per_second: float) -> str:
    """A rate with three significant figures, thousands separated: 1,234, 31.2, 0.157."""
    if per_second >= 100:
        return f"{per_second:,.0f}"
    return f"{per_second:.3g}"


def _format_postfix_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


class LineProgress:
    """A progress 'bar' for logs: heartbeat lines while it runs, one summary line at the end.

    total:       the count that means done (None: unknown; no percentage or ETA then).
    desc, unit:  as tqdm's; they start every line and name the counted things.
    initial:     the count already done (a resumed run); the rate counts only this run's.
    summary:     write a summary line on close (False where the caller logs its own line).
    heartbeat_s: least seconds between heartbeat lines (None: no heartbeats).
    stream:      where lines go (default: sys.stderr, like tqdm).
    clock:       seconds from an arbitrary start (time.monotonic; a fake one in tests).
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        initial: float = 0,
        summary: bool = True,
        heartbeat_s: float | None = HEARTBEAT_SECONDS,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.initial = initial
        self.summary = summary
        self.heartbeat_s = heartbeat_s
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.postfix: dict[str, str] = {}
        self.started = clock()
        self.last_line_at = self.started
        self.closed = False

    # -- tqdm's interface -------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress was created without an iterable")
        for item in self.iterable:
            yield item
            self.update(1)
        # Only a loop that ran to the end gets its summary line: one left by an
        # exception or a break says nothing (the error says where it stopped).
        self.close()

    def update(self, n: float = 1) -> None:
        """Count `n` more done; write a heartbeat line if `heartbeat_s` has passed since the
        last one (never at the end: the summary, or the caller's own line, comes then)."""
        self.n += n
        finished = self.total is not None and self.n >= self.total  # the closing line follows
        if self.heartbeat_s is None or self.closed or finished:
            return
        now = self.clock()
        if now - self.last_line_at >= self.heartbeat_s:
            self.last_line_at = now
            self._emit(self.heartbeat_line(now))

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Figures shown after the counts (loss=..., acc=...), as tqdm's set_postfix; `refresh` is ignored."""
        values = {**(ordered_dict or {}), **kwargs}
        self.postfix = {key: _format_postfix_value(value) for key, value in values.items()}

    def write(self, s: str, file: TextIO | None = None, end: str = "\n", nolock: bool = False) -> None:
        """Print a message (to stdout by default, like tqdm.write)."""
        stream = file if file is not None else sys.stdout
        stream.write(s + end)
        stream.flush()

    def close(self) -> None:
        """Finish: write the summary line (once) if `summary` is set."""
        if self.closed:
            return
        self.closed = True
        if self.summary:
            self._emit(self.summary_line(self.clock()))

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.summary = False  # the error says where it stopped; a 'done' line would mislead
        self.close()

    # -- the lines ---------------------------------------------------------------

    def rate(self, now: float) -> float:
        """Units per second done by this bar (not counting `initial`); 0 before any time passed."""
        elapsed = now - self.started
        return (self.n - self.initial) / elapsed if elapsed > 0 else 0.0

    def heartbeat_line(self, now: float) -> str:
        """`desc: 12,000/60,000 img (20%), 31.2 img/s, ETA 26 min, key=value`."""
        rate = self.rate(now)
        parts = [f"{self.n:,.0f} {self.unit}"]
        if self.total:
            parts = [f"{self.n:,.0f}/{self.total:,.0f} {self.unit} ({100 * self.n / self.total:.0f}%)"]
        parts.append(f"{format_rate(rate)} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {format_duration(max(self.total - self.n, 0) / rate)}")
        return self._with_desc_and_postfix(parts)

    def summary_line(self, now: float) -> str:
        """`desc: 469 it in 4 min 58 s, 1.57 it/s, key=value`."""
        elapsed = now - self.started
        parts = [f"{self.n - self.initial:,.0f} {self.unit} in {format_duration(elapsed)}"]
        if elapsed > 0:
            parts.append(f"{format_rate(self.rate(now))} {self.unit}/s")
        return self._with_desc_and_postfix(parts)

    def _with_desc_and_postfix(self, parts: list[str]) -> str:
        parts += [f"{key}={value}" for key, value in self.postfix.items()]
        text = ", ".join(parts)
        return f"{self.desc}: {text}" if self.desc else text

    def _emit(self, line: str) -> None:
        if self.stream is not sys.stdout:
            sys.stdout.flush()  # what was printed before this line comes before it in a shared log
        self.stream.write(line + "\n")
        self.stream.flush()


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    initial: float = 0,
    disable: bool = False,
    summary: bool = True,
    heartbeat_s: float | None = HEARTBEAT_SECONDS,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    **tqdm_options: Any,
) -> ProgressBar:
    """A tqdm bar when `stream` (default sys.stderr) is a terminal, else a `LineProgress`.

    `iterable`, `total`, `desc`, `unit`, `initial` and `disable` mean what they mean
    to tqdm; `tqdm_options` (leave, mininterval, position, ...) go to tqdm only.
    `summary`, `heartbeat_s` and `clock` apply to line mode only (see `LineProgress`).
    """
    stream = stream if stream is not None else sys.stderr
    if disable or is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=stream, **tqdm_options)
    return LineProgress(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        summary=summary,
        heartbeat_s=heartbeat_s,
        stream=stream,
        clock=clock,
    )
