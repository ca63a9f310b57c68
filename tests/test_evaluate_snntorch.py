"""`snn-mnist evaluate` on snnTorch checkpoints built here (issue 13's acceptance): a 3-layer
nn.Sequential with per-neuron learned beta and zero reset, and the study's class with
reset_mechanism="zero" and learned beta, give predictions identical to snnTorch's on all
10,000 test images."""

from __future__ import annotations

import json
from pathlib import Path

import snntorch as snn
import torch
from torch import Tensor, nn

from experiments.cli import main
from training.data import MnistSplit

STEPS = 25


class StudyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.lif1 = snn.Leaky(beta=0.9, learn_beta=True, reset_mechanism="zero")
        self.fc2 = nn.Linear(128, 10)
        self.lif2 = snn.Leaky(beta=0.9, learn_beta=True, reset_mechanism="zero")

    def forward(self, x: Tensor) -> Tensor:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        counts = torch.zeros(x.shape[0], 10)
        for _ in range(STEPS):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            counts = counts + spk2
        return counts


def sequential() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(784, 64),
        snn.Leaky(beta=torch.rand(64) * 0.5 + 0.5, learn_beta=True, reset_mechanism="zero", init_hidden=True),
        nn.Linear(64, 32),
        snn.Leaky(beta=torch.rand(32) * 0.5 + 0.5, learn_beta=True, reset_mechanism="zero", init_hidden=True),
        nn.Linear(32, 10),
        snn.Leaky(beta=0.9, learn_beta=True, reset_mechanism="zero", init_hidden=True, output=True),
    )


def _sequential_counts(net: nn.Sequential, x: Tensor) -> Tensor:
    for module in net:
        if isinstance(module, snn.Leaky):
            module.reset_mem()
    counts = torch.zeros(x.shape[0], 10)
    for _ in range(STEPS):
        spk, _ = net(x)
        counts = counts + spk
    return counts


@torch.no_grad()
def _their_predictions(forward, images: Tensor) -> Tensor:
    return torch.cat([forward(images[start : start + 1000]).argmax(dim=1) for start in range(0, len(images), 1000)])


def _ours(path: Path, out: Path, mnist_dir: Path, capsys) -> tuple[list[int], str]:
    code = main(["evaluate", str(path), "--data-dir", str(mnist_dir), "--json", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    return json.loads(out.read_text())["predictions"], printed


def test_evaluate_matches_snntorch_on_every_test_image(
    tmp_path: Path, mnist_dir: Path, mnist_test: MnistSplit, capsys
) -> None:
    torch.manual_seed(0)
    study, stack = StudyNet(), sequential()
    with torch.no_grad():  # learned betas that differ from the constructor's
        study.lif1.beta.fill_(0.85)
        study.lif2.beta.fill_(0.8)
        stack[1].beta.mul_(1.1)  # some above 1: clamped in the forward pass
    images = mnist_test.flat_images
    for name, model, forward, detected in (
        ("study", study, study, "784-128-10"),
        ("sequential", stack, lambda x: _sequential_counts(stack, x), "784-64-32-10"),
    ):
        path = tmp_path / f"{name}.pt"
        torch.save(model.state_dict(), path)
        theirs = _their_predictions(forward, images)
        ours, printed = _ours(path, tmp_path / f"{name}.json", mnist_dir, capsys)
        assert f"architecture: {detected}" in printed and "zero" in printed
        assert len(ours) == 10_000
        assert torch.equal(torch.tensor(ours), theirs), name
        assert len(set(ours)) > 1  # not a constant prediction
