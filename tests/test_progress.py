"""Progress output: tqdm in a terminal, plain lines in a log (training.progress)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from tqdm.auto import tqdm

from experiments.cli import main
from training.progress import LineProgress, format_duration, progress_bar


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def line_bar(stream: io.StringIO, clock: FakeClock, **options) -> LineProgress:
    bar = progress_bar(stream=stream, clock=clock, **options)
    assert isinstance(bar, LineProgress)
    return bar


def test_a_terminal_gets_tqdm_and_anything_else_gets_lines() -> None:
    assert isinstance(progress_bar(total=3, stream=FakeTerminal()), tqdm)
    assert isinstance(progress_bar(total=3, stream=io.StringIO()), LineProgress)


def test_stderr_decides_when_no_stream_is_given(monkeypatch, capsys) -> None:
    """Captured stderr is not a terminal; with isatty faked to True, tqdm is used."""
    assert isinstance(progress_bar(total=3), LineProgress)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = progress_bar(total=3, leave=False)
    assert isinstance(bar, tqdm)
    bar.close()


def test_heartbeat_comes_at_most_once_per_interval() -> None:
    clock, stream = FakeClock(), io.StringIO()
    bar = line_bar(stream, clock, total=60_000, desc="stdp train", unit="img", summary=False, heartbeat_s=60.0)
    for _ in range(300):  # 300 updates, 1 s apart: 5 intervals of 60 s, the last one ending the bar
        clock.advance(1.0)
        bar.update(200)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # after 60, 120, 180 and 240 s; none at the end, where the closing line comes
    assert lines[0] == "stdp train: 12,000/60,000 img (20%), 200 img/s, ETA 4 min 0 s"
    assert "\r" not in stream.getvalue()


def test_no_heartbeat_before_the_interval_and_none_when_disabled() -> None:
    clock, stream = FakeClock(), io.StringIO()
    bar = line_bar(stream, clock, total=10, summary=False, heartbeat_s=60.0)
    clock.advance(59.9)
    bar.update(5)
    assert stream.getvalue() == ""
    clock, stream = FakeClock(), io.StringIO()
    bar = line_bar(stream, clock, total=10, summary=False, heartbeat_s=None)
    clock.advance(1e6)
    bar.update(5)
    assert stream.getvalue() == ""


def test_heartbeat_carries_the_postfix_and_counts_a_resumed_run_from_its_start() -> None:
    clock, stream = FakeClock(), io.StringIO()
    bar = line_bar(stream, clock, total=60_000, initial=30_000, desc="stdp train", unit="img", summary=False)
    clock.advance(100.0)
    bar.set_postfix(spikes="14.2", shows="1.05", refresh=False)
    bar.update(6_000)
    assert stream.getvalue() == "stdp train: 36,000/60,000 img (60%), 60 img/s, ETA 6 min 40 s, spikes=14.2, shows=1.05\n"


def test_summary_line_once_on_close_and_on_a_finished_loop() -> None:
    clock, stream = FakeClock(), io.StringIO()
    with line_bar(stream, clock, total=469, desc="snnTorch epoch 1") as bar:
        clock.advance(298.0)
        bar.update(469)
    bar.close()  # a second close writes nothing
    assert stream.getvalue() == "snnTorch epoch 1: 469 it in 4 min 58 s, 1.57 it/s\n"

    clock, stream = FakeClock(), io.StringIO()
    for _ in progress_bar(range(4), desc="evaluate", unit="batch", stream=stream, clock=clock):
        clock.advance(0.5)
    assert stream.getvalue() == "evaluate: 4 batch in 2.0 s, 2 batch/s\n"


def test_no_summary_line_when_the_work_stops_with_an_error() -> None:
    clock, stream = FakeClock(), io.StringIO()
    with pytest.raises(RuntimeError):
        with line_bar(stream, clock, total=10, desc="work") as bar:
            bar.update(3)
            raise RuntimeError("stop")
    with pytest.raises(RuntimeError):
        for _ in progress_bar(range(4), desc="loop", stream=stream, clock=clock):
            raise RuntimeError("stop")
    assert stream.getvalue() == ""


def test_write_goes_to_stdout_like_tqdm_write(capsys) -> None:
    bar = line_bar(io.StringIO(), FakeClock(), total=1)
    bar.write("checkpoint: test accuracy 50.00%")
    assert capsys.readouterr().out == "checkpoint: test accuracy 50.00%\n"


@pytest.mark.parametrize(
    "seconds, text", [(3.25, "3.2 s"), (45.0, "45 s"), (298.0, "4 min 58 s"), (1560.0, "26 min"), (4 * 3600.0, "4.0 h")]
)
def test_durations_read_naturally(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


TRAIN_FLAGS = ["--train-subset", "512", "--test-subset", "200", "--epochs", "2", "--hidden", "32", "--threads", "1"]


def test_train_in_a_log_writes_one_line_per_epoch_and_no_bar_frames(mnist_dir: Path, tmp_path: Path, capfd) -> None:
    """stderr is captured (not a terminal): no carriage returns anywhere, and each epoch
    is one line that carries the bar's figures (loss, accuracy, images/s)."""
    assert main(["train", "--data-dir", str(mnist_dir), "--out", str(tmp_path), *TRAIN_FLAGS]) == 0
    captured = capfd.readouterr()
    assert "\r" not in captured.out and "\r" not in captured.err
    lines = (captured.out + captured.err).splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1/2", "epoch 2/2"]
    for line in epoch_lines:
        assert "loss" in line and "train" in line and "test" in line and "img/s" in line
    assert captured.err == ""  # a short run: no heartbeat, and the epoch bar adds no summary of its own


def test_train_in_a_terminal_keeps_the_tqdm_bar(mnist_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["train", "--data-dir", str(mnist_dir), "--out", str(tmp_path), *TRAIN_FLAGS]) == 0
    captured = capsys.readouterr()
    assert "\r" in captured.err and "epoch 1/2:" in captured.err  # tqdm's frames, as in a terminal
    assert len([line for line in captured.out.splitlines() if line.startswith("epoch ")]) == 2
