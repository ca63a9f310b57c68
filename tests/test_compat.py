"""`lif_core.compat.Leaky`, the drop-in snn.Leaky: a study-style snnTorch script with its
import swapped gives the same spikes, losses and gradients; snnTorch's call conventions,
state_dict entries, learnable graded factor, surrogate_disable and the reset_mechanism
property behave as snnTorch 1.0.0's, also under torch.compile(fullgraph=True)."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import snntorch as snn
import torch
import torch._dynamo as dynamo
import torch.nn.functional as F
from snntorch import surrogate as snn_surrogate
from snntorch import utils as snn_utils
from torch import Tensor, nn

from lif_core import compat
from training.data import MnistSplit


def study_script(snn_module: ModuleType | SimpleNamespace, surrogate: Any, reset: str, learn: bool) -> type:
    """The study's network as its snnTorch code writes it, for whichever `snn` is passed."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(784, 64)
            self.lif1 = snn_module.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid(slope=25),
                                         reset_mechanism=reset, learn_beta=learn, learn_threshold=learn,
                                         learn_graded_spikes_factor=learn)
            self.fc2 = nn.Linear(64, 10)
            self.lif2 = snn_module.Leaky(beta=0.9, spike_grad=surrogate.fast_sigmoid(slope=25),
                                         reset_mechanism=reset, learn_beta=learn, learn_threshold=learn,
                                         learn_graded_spikes_factor=learn)

        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
            spk1_rec, spk2_rec = [], []
            for _ in range(25):
                spk1, mem1 = self.lif1(self.fc1(x), mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                spk1_rec.append(spk1)
                spk2_rec.append(spk2)
            return torch.stack(spk2_rec), torch.stack(spk1_rec)

    return Net


def _run(net: nn.Module, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    spikes2, spikes1 = net(images)
    loss = F.cross_entropy(spikes2.sum(0), labels) + 1e-4 * spikes1.sum(0).mean()
    loss.backward()
    return spikes2, spikes1, loss.detach(), {name: p.grad for name, p in net.named_parameters()}


@pytest.mark.parametrize("keep_snntorch_surrogate", [True, False])
@pytest.mark.parametrize(("reset", "learn"), [("subtract", False), ("zero", True), ("none", True)])
def test_swapping_the_import_gives_the_same_spikes_losses_and_gradients(
    mnist_test: MnistSplit, keep_snntorch_surrogate: bool, reset: str, learn: bool
) -> None:
    images, labels = mnist_test.flat_images[:32], mnist_test.labels[:32]
    theirs_class = study_script(snn, snn_surrogate, reset, learn)
    ours_class = study_script(compat, snn_surrogate if keep_snntorch_surrogate else compat.surrogate, reset, learn)
    torch.manual_seed(0)
    theirs = theirs_class()
    torch.manual_seed(0)
    ours = ours_class()
    assert theirs.state_dict().keys() == ours.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key
    their_run, our_run = _run(theirs, images, labels), _run(ours, images, labels)
    assert 0 < float(their_run[1].detach().mean()) < 1
    for theirs_value, ours_value in zip(their_run[:3], our_run[:3]):
        assert torch.equal(theirs_value, ours_value)
    assert their_run[3].keys() == our_run[3].keys()
    for name, grad in their_run[3].items():
        torch.testing.assert_close(our_run[3][name], grad, rtol=1e-6, atol=1e-9, msg=name)


def test_sequential_init_hidden_and_output_conventions(mnist_test: MnistSplit) -> None:
    """nn.Sequential with init_hidden=True layers and a last output=True layer, reset by utils.reset."""

    def stack(snn_module: Any, surrogate: Any, reset: Any) -> tuple[nn.Sequential, Any]:
        torch.manual_seed(1)
        net = nn.Sequential(
            nn.Linear(784, 32),
            snn_module.Leaky(beta=torch.rand(32), spike_grad=surrogate.atan(alpha=2.0), init_hidden=True,
                             learn_beta=True, reset_mechanism="zero"),
            nn.Linear(32, 10),
            snn_module.Leaky(beta=0.8, init_hidden=True, output=True, reset_delay=False, graded_spikes_factor=2.0),
        )
        return net, reset

    images = mnist_test.flat_images[:16]
    results = []
    for snn_module, surrogate, utils in ((snn, snn_surrogate, snn_utils), (compat, compat.surrogate, compat.utils)):
        net, reset = stack(snn_module, surrogate, utils.reset)
        reset(net)
        spikes, membranes = [], []
        for _ in range(20):
            spk, mem = net(images)
            spikes.append(spk)
            membranes.append(mem)
        loss = torch.stack(membranes).sum(0).pow(2).mean() + torch.stack(spikes).sum()
        loss.backward()
        results.append((torch.stack(spikes), torch.stack(membranes), net[1].beta.grad, net[0].weight.grad))
        assert isinstance(net[1](net[0](images)), Tensor)  # init_hidden without output: spk only
    (their_spikes, their_mem, their_beta, their_w), (our_spikes, our_mem, our_beta, our_w) = results
    assert torch.equal(their_spikes, our_spikes) and torch.equal(their_mem, our_mem)
    assert float(their_spikes.detach().sum()) > 0
    torch.testing.assert_close(our_beta, their_beta, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(our_w, their_w, rtol=1e-5, atol=1e-8)


def test_state_dicts_load_both_ways_strictly_and_reset_mechanism_follows() -> None:
    theirs = snn.Leaky(beta=torch.full((5,), 0.7), threshold=0.5, learn_threshold=True, reset_mechanism="zero")
    ours = compat.Leaky(beta=torch.full((5,), 0.9), learn_threshold=True)
    with pytest.raises(RuntimeError, match=r"reset_mechanism_val is 1 \('zero'\), but this Leaky was built with reset_mechanism='subtract'"):
        ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.reset_mechanism == "subtract" and int(ours.reset_mechanism_val) == 0  # refused, not half-loaded
    ours = compat.Leaky(beta=torch.full((5,), 0.9), learn_threshold=True, reset_mechanism="zero")
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.reset_mechanism == "zero" and int(ours.reset_mechanism_val) == 1
    assert torch.equal(ours.beta, theirs.beta)
    back = snn.Leaky(beta=0.1, learn_threshold=True, reset_mechanism="none")
    back.load_state_dict(compat.Leaky(beta=0.3, threshold=0.5, learn_threshold=True,
                                      reset_mechanism="none").state_dict(), strict=True)
    assert float(back.threshold.detach()) == 0.5 and int(back.reset_mechanism_val) == 2
    ours.reset_mechanism = "subtract"
    assert int(ours.reset_mechanism_val) == 0
    current = torch.full((1, 5), 0.8)
    assert torch.equal(ours(current, ours.init_leaky())[1], snn.Leaky(beta=0.7, threshold=0.5)(current)[1])
    with pytest.raises(ValueError, match="reset_mechanism 'bogus'"):
        ours.reset_mechanism = "bogus"


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"inhibition": True}, "inhibition=True"),
        ({"state_quant": lambda x: x}, "state_quant"),
        ({"spike_grad": snn_surrogate.triangular()}, "spike_grad"),
        ({"reset_mechanism": "soft"}, "reset_mechanism 'soft'"),
    ],
)
def test_unsupported_arguments_are_named_not_ignored(arguments: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named) as error:
        compat.Leaky(beta=0.9, **arguments)
    assert "\n" not in str(error.value)


def test_surrogate_disable_cuts_the_graph_at_the_spike_as_snntorch_does() -> None:
    """surrogate_disable=True: the same float32 spikes and membranes as snnTorch's, spikes with
    no graph (a loss on them alone cannot be differentiated), membranes with one; the graded
    factor still learns through the spikes."""
    current = torch.rand(6, 4, 3) * 1.5
    results = []
    for snn_module in (snn, compat):
        layer = snn_module.Leaky(beta=0.8, surrogate_disable=True, learn_graded_spikes_factor=True)
        x = current.clone().requires_grad_()
        mem, spikes, membranes = layer.init_leaky(), [], []
        for x_t in x:
            spk, mem = layer(x_t * 1.0, mem)
            spikes.append(spk)
            membranes.append(mem)
        assert spikes[0].grad_fn is not None and membranes[0].requires_grad  # through g and the membrane
        (grad,) = torch.autograd.grad(torch.stack(spikes).sum(), layer.graded_spikes_factor)
        results.append((torch.stack(spikes), torch.stack(membranes), grad))
        bare = snn_module.Leaky(beta=0.8, surrogate_disable=True)
        spk, _ = bare(x[0], bare.init_leaky())
        assert not spk.requires_grad
    (their_spikes, their_mem, their_grad), (our_spikes, our_mem, our_grad) = results
    assert our_spikes.dtype == their_spikes.dtype == torch.float32
    assert torch.equal(our_spikes, their_spikes) and torch.equal(our_mem.detach(), their_mem.detach())
    assert torch.equal(our_grad, their_grad) and float(our_grad) > 0


@pytest.mark.parametrize(("reset", "reset_delay"), [("subtract", True), ("zero", False)])
def test_the_drop_in_builds_and_runs_under_torch_compile_fullgraph(reset: str, reset_delay: bool) -> None:
    """torch.compile(fullgraph=True) of the drop-in (learnt beta, threshold and graded factor):
    no graph break, and the same spikes, membranes and gradients as eager mode and snnTorch."""
    generator = torch.Generator().manual_seed(3)
    current = torch.rand(8, 5, 6, generator=generator) * 1.5
    arguments = dict(beta=0.85, threshold=0.9, reset_mechanism=reset, reset_delay=reset_delay, learn_beta=True,
                     learn_threshold=True, learn_graded_spikes_factor=True, graded_spikes_factor=1.5)
    eager = compat.Leaky(**arguments)
    explanation = dynamo.explain(compat.Leaky(**arguments))(current[0], torch.zeros(5, 6))
    assert explanation.graph_break_count == 0
    results = []
    for layer in (snn.Leaky(**arguments), eager, torch.compile(compat.Leaky(**arguments), fullgraph=True)):
        mem, spikes, membranes = torch.zeros(5, 6), [], []
        for current_t in current:
            spk, mem = layer(current_t, mem)
            spikes.append(spk)
            membranes.append(mem)
        loss = (torch.stack(spikes) * 2.0).sum() + torch.stack(membranes).pow(2).sum()
        parameters = [param for _, param in sorted(layer.named_parameters())]
        results.append((torch.stack(spikes), torch.stack(membranes), torch.autograd.grad(loss, parameters)))
    theirs, ours, compiled = results
    for other in (ours, compiled):
        assert torch.equal(other[0], theirs[0]) and torch.equal(other[1], theirs[1])
        for mine, reference in zip(other[2], theirs[2]):
            torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6)


def test_snntorchs_own_leaky_checks_hold() -> None:
    """What snnTorch 1.0.0's tests/test_snntorch/test_leaky.py checks, on the drop-in: the
    membrane decays by beta from one call to the next, reset_mechanism_val follows the
    property, init_hidden layers return the spike alone and refuse a membrane argument, a
    learnt graded factor requires grad, and surrogate_disable compiles without graph breaks."""
    input_ = torch.tensor([0.25, 0.0]).unsqueeze(-1)
    layer = compat.Leaky(beta=0.5)
    mem, mem_rec, spk_rec = layer.init_leaky(), [], []
    for step in range(2):
        spk, mem = layer(input_[step], mem)
        mem_rec.append(mem)
        spk_rec.append(spk)
    assert mem_rec[1] == mem_rec[0] * 0.5 + input_[1] and spk_rec[0] == spk_rec[1]
    layers = [compat.Leaky(beta=0.5, reset_mechanism=name) for name in ("subtract", "zero", "none")]
    assert [int(layer.reset_mechanism_val) for layer in layers] == [0, 1, 2]
    for layer, name in zip(layers, ("zero", "none", "subtract")):
        layer.reset_mechanism = name
    assert [int(layer.reset_mechanism_val) for layer in layers] == [1, 2, 0]
    for name in ("subtract", "zero", "none"):
        hidden = compat.Leaky(beta=0.5, init_hidden=True, reset_mechanism=name)
        assert hidden(input_[0]) == hidden(input_[1])
        with pytest.raises(TypeError):
            hidden(input_, input_)
    assert compat.Leaky(beta=0.5, init_hidden=True, learn_graded_spikes_factor=True).graded_spikes_factor.requires_grad
    assert dynamo.explain(compat.Leaky(beta=0.5, surrogate_disable=True))(input_[0]).graph_break_count == 0
