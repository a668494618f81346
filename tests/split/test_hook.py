"""advbn_aug.split.hook: the hook-substitution split (execution order, recording hooks, refusals)."""

import pytest
import torch
from torch import nn

from advbn_aug.split import split_model


class _HeadFirst(nn.Module):
    """Registers its head before its body: registration order is not execution order."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 3)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1),
                                  nn.BatchNorm2d(4))

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def test_hook_split_checks_registration_order_on_the_first_train_forward():
    model = _HeadFirst()
    split = split_model(model, "body.2", "hook")
    assert model.head in split.prefix_modules, "provisional split: registration order"
    split.verify()  # nothing recorded yet
    model.eval()(torch.randn(2, 3, 4, 4))
    assert split.execution_order is None, "eval forwards record nothing"
    model.train()(torch.randn(2, 3, 4, 4))
    assert split.execution_order == ["body", "body.0", "body.1", "body.2", "body.3", "body.4", "head"]
    with pytest.raises(RuntimeError, match=r"different order than it registers.*'head' ran after the layer but "
                                           r"registration order put them before it.*example_inputs=\(x,\)"):
        split.verify()


def test_example_inputs_record_the_split_up_front():
    torch.manual_seed(0)
    model = _HeadFirst().train()
    x = torch.randn(2, 3, 4, 4)
    stats = model.body[1].running_mean.clone()
    split = split_model(model, "body.2", "hook", example_inputs=(x,))
    body = model.body
    assert split.prefix_modules == [body[0], body[1], body[2]]
    assert split.suffix_modules == [model.head, body[3], body[4]]
    assert {id(p) for p in split.prefix_params} == {id(p) for m in body[:2] for p in m.parameters()}
    assert all(m.training for m in model.modules()) and torch.equal(model.body[1].running_mean, stats)
    assert not model._forward_pre_hooks and not model._forward_hooks, "already exact: nothing to record later"
    assert split.execution_order[-1] == "head"
    model(x)
    split.verify()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(split.run_suffix(body[:3](x), train=False, inputs=((x,), {})), model(x))


class _Shared(nn.Module):
    """Uses one ReLU (stateless) and one BatchNorm (stateful) on both sides of ``conv2``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.norm, self.act = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)
        self.share_norm = True

    def forward(self, x):
        x = self.act(self.norm(self.conv1(x)))
        x = self.conv2(x)
        return self.head(self.act(self.norm(x) if self.share_norm else x).mean((2, 3)))


def test_module_on_both_sides_of_the_cut():
    model = _Shared()
    split = split_model(model, "conv2", "hook")
    with pytest.raises(RuntimeError, match=r"'norm' ran both before and after layer 'conv2'.*own module instance"):
        model.train()(torch.randn(2, 3, 2, 2))
    with pytest.raises(RuntimeError, match="ran both before and after"):
        split.verify()
    with pytest.raises(RuntimeError, match="'norm' ran both before and after"):
        split_model(model, "conv2", "hook", example_inputs=(torch.randn(2, 3, 2, 2),))
    # a shared stateless module (torchvision's BasicBlock.relu) is on neither side: nothing to freeze or convert
    model.share_norm = False
    split = split_model(model, "conv2", "hook", example_inputs=(torch.randn(2, 3, 2, 2),))
    assert split.prefix_modules == [model.conv1, model.norm, model.conv2] and split.suffix_modules == [model.head]
    split = split_model(model, "conv2", "hook")
    model(torch.randn(2, 3, 2, 2))
    split.verify()


def test_hook_suffix_keeps_an_instance_level_forward():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1), nn.Flatten())
    layer, calls = model[1], []
    plain = layer.forward

    def wrapper(*args, **kwargs):  # what accelerate/peft install on an instance
        calls.append(1)
        return plain(*args, **kwargs)

    layer.forward = wrapper
    split = split_model(model, "1", "hook")
    x, f = torch.randn(1, 3, 2, 2), torch.randn(1, 4, 2, 2)
    torch.testing.assert_close(split.run_suffix(f, train=False, inputs=((x,), {})), f.flatten(1))
    assert not calls and layer.__dict__["forward"] is wrapper
    model(x)
    assert calls == [1]


def test_hooks_removed_after_recording_and_by_close():
    model = _HeadFirst().train()
    user = model.register_forward_pre_hook(lambda m, args, kwargs: ((args[0] * 0,), kwargs), with_kwargs=True)
    split = split_model(model, "body.2", "hook")
    out = model(torch.randn(2, 3, 4, 4))
    torch.testing.assert_close(out, model.head(model.body(torch.zeros(2, 3, 4, 4)).mean((2, 3))))
    assert split.execution_order is not None, "recorded alongside the model's own with_kwargs pre-hook"
    assert list(model._forward_pre_hooks) == [user.id] and not model._forward_hooks, "later forwards pay nothing"
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules() if m is not model)

    split = split_model(model, "body.2", "hook")
    split.close()
    split.close()  # idempotent
    assert list(model._forward_pre_hooks) == [user.id] and not model._forward_hooks
    model(torch.randn(2, 3, 4, 4))
    assert split.execution_order is None


class _FailsOnce(_HeadFirst):
    fail = True

    def forward(self, x):
        y = self.body(x)
        if self.fail:
            self.fail = False
            raise ValueError("boom")
        return self.head(y.mean((2, 3)))


def test_recording_restarts_after_a_forward_that_raised():
    model = _FailsOnce().train()
    split = split_model(model, "body.2", "hook")
    with pytest.raises(ValueError, match="boom"):
        model(torch.randn(2, 3, 4, 4))
    model(torch.randn(2, 3, 4, 4))
    assert split.execution_order[-1] == "head"
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())
