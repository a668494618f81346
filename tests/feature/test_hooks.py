"""feature.hooks: hooks are found and removed by owner (deep copies included), EvalModeHook keeps its module in eval
mode, and hooks act only in a training forward outside torch.fx tracing."""

from __future__ import annotations

import copy

import torch
from torch import nn

from advbn_aug.feature.hooks import EvalModeHook, OwnedHook, hook_owners, owned_hooks, remove_hooks, training_forward


class _Owner:
    """Stands for an augmenter."""


class _Scale(OwnedHook):
    """Forward hook doubling the output."""

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * 2


def _net() -> nn.Sequential:
    """``(N, 3, 4, 4) -> (N, 4, 4, 4)``: conv, BatchNorm, conv."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1))


def test_hooks_are_found_and_removed_by_owner():
    net, a, b = _net(), _Owner(), _Owner()
    plain = []
    net[1].register_forward_pre_hook(EvalModeHook(a))
    net[2].register_forward_hook(_Scale(b))
    net[2].register_forward_pre_hook(EvalModeHook(b), with_kwargs=True)
    net[2].register_forward_hook(lambda m, i, o: plain.append(1))  # not owned: never removed
    assert [type(h) for h in owned_hooks(net, OwnedHook)] == [EvalModeHook, _Scale, EvalModeHook]
    assert [h.owner for h in owned_hooks(net, EvalModeHook)] == [a, b]
    assert hook_owners(net) == [a, b] and hook_owners(net, _Scale) == [b]
    remove_hooks(net, a)
    assert hook_owners(net) == [b] and not net[1]._forward_pre_hooks
    remove_hooks(net)
    assert hook_owners(net) == [] and not net[2]._forward_pre_hooks_with_kwargs
    assert len(net[2]._forward_hooks) == 1
    net(torch.rand(1, 3, 4, 4))
    assert plain == [1]


def test_a_deep_copy_has_its_own_owners():
    """A deep copy (timm's ModelEmaV3) carries copies of the hooks, owned by copies of the owner: removing the
    original owner's hooks leaves the copy's, and the other way round."""
    net, a = _net(), _Owner()
    net[2].register_forward_hook(_Scale(a))
    twin = copy.deepcopy(net)
    (owner,) = hook_owners(twin)
    assert owner is not a and isinstance(owner, _Owner)
    remove_hooks(twin, a)
    assert hook_owners(twin) == [owner]
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(twin(x), net(x))
    remove_hooks(twin, owner)
    torch.testing.assert_close(twin(x) * 2, net(x))
    assert hook_owners(net) == [a]


def test_eval_mode_hook_keeps_running_statistics():
    net = _net().train()
    net[1].register_forward_pre_hook(EvalModeHook(_Owner()))
    before = net[1].running_mean.clone()
    net(torch.rand(4, 3, 4, 4) + 5)
    assert not net[1].training and net[0].training
    assert torch.equal(net[1].running_mean, before)


class _Probe(nn.Module):
    """Records :func:`training_forward` of itself at each forward; ``(N, C) -> (N, C)``."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(training_forward(self))
        return x + 1


def test_training_forward_only_in_train_mode_and_outside_fx_tracing():
    probe = _Probe()
    probe.train()(torch.zeros(1, 2))
    probe.eval()(torch.zeros(1, 2))
    probe.train()
    torch.fx.symbolic_trace(probe)
    assert probe.seen == [True, False, False]
