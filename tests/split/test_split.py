import warnings

import pytest
import timm
import torch
import torchvision
from torch import nn

from advbn_aug.split import FxSplit, HookSplit, SplitFallbackWarning, layer_candidates, resolve_layer, split_model


def test_resolve_by_name_and_feature_info_index():
    model = timm.create_model("resnet18")
    assert resolve_layer(model, "layer2") == "layer2"
    assert resolve_layer(model, 1) == "layer1"
    assert resolve_layer(model, "1") == "layer1"
    assert resolve_layer(model, -1) == "layer4"
    assert layer_candidates(model)[:5] == ["act1", "layer1", "layer2", "layer3", "layer4"]


def test_unknown_layer_message_lists_candidates():
    model = torchvision.models.resnet18()
    with pytest.raises(ValueError, match=r"layer 'layer9' is not a module of ResNet.*layer1"):
        resolve_layer(model, "layer9")


@pytest.mark.parametrize("build, layer, size", [
    (lambda: torchvision.models.resnet18(num_classes=4), "layer1", 32),
    (lambda: timm.create_model("resnet18", num_classes=4, drop_rate=0.2), "layer2", 32),
    (lambda: timm.create_model("convnext_atto", num_classes=4), "stages.0", 32),
    (lambda: timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3, num_classes=4),
     "blocks.0", 32),
    (lambda: torchvision.models.mobilenet_v3_small(num_classes=4), "features.2", 32),
])
@pytest.mark.parametrize("mode", ["fx", "hook"])
def test_suffix_reproduces_the_model(build, layer, size, mode):
    torch.manual_seed(0)
    model = build().eval()
    split = split_model(model, layer, mode)
    assert split.mode == mode
    x = torch.randn(2, 3, size, size)
    cache = {}
    h = split.layer_module.register_forward_hook(lambda m, i, o: cache.setdefault("f", o))
    with torch.no_grad():
        ref = model(x)
    h.remove()
    with torch.no_grad():
        out = split.run_suffix(cache["f"], train=False, inputs=((x,), {}))
    torch.testing.assert_close(out, ref)
    # substituting a different feature changes the output
    with torch.no_grad():
        out2 = split.run_suffix(cache["f"] + torch.randn_like(cache["f"]), train=False, inputs=((x,), {}))
    assert not torch.allclose(out2, ref)
    assert split.layer_module in split.prefix_modules
    assert not set(map(id, split.prefix_modules)) & set(map(id, split.suffix_modules))


def test_fx_split_partitions_parameters():
    model = torchvision.models.resnet18()
    split = split_model(model, "layer1", "fx")
    prefix = {id(p) for p in split.prefix_params}
    assert id(model.conv1.weight) in prefix and id(model.layer1[0].conv1.weight) in prefix
    assert id(model.layer2[0].conv1.weight) not in prefix and id(model.fc.weight) not in prefix
    # submodules are shared, not copied
    assert split._graphs[True].get_submodule("fc") is model.fc


def test_suffix_modes_restored_and_train_graph_used():
    model = timm.create_model("resnet18", num_classes=4, drop_rate=0.9).train()
    split = split_model(model, "layer3", "fx")
    f = torch.rand(4, 256, 2, 2)
    with torch.no_grad():
        a, b = split.run_suffix(f, train=False), split.run_suffix(f, train=False)
        c = split.run_suffix(f, train=True)
    assert torch.equal(a, b) and not torch.equal(a, c), "the train graph keeps forward_head's dropout"
    assert all(m.training for m in model.modules())


class _Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.b = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.b(self.a(x)) + x  # the suffix reads the input


def test_skip_around_layer_falls_back():
    with pytest.warns(SplitFallbackWarning, match="model input"):
        split = split_model(_Skip(), "a")
    assert split.mode == "hook" and "model input" in split.reason
    with pytest.raises(ValueError, match="mode='hook'"):
        split_model(_Skip(), "a", "fx")
    with pytest.raises(RuntimeError, match="needs the model inputs"):
        split.run_suffix(torch.zeros(1, 3, 2, 2), train=False)


def test_bad_mode():
    with pytest.raises(ValueError, match="split mode must be"):
        split_model(_Skip(), "a", "graph")


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


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.block = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.block(self.block(self.stem(x))).mean((2, 3)))


def test_layer_called_twice_falls_back_then_raises():
    model = _Twice()
    with pytest.warns(SplitFallbackWarning, match="called 2 times"):
        split = split_model(model, "block")
    assert isinstance(split, HookSplit)
    with pytest.raises(RuntimeError, match=r"layer 'block' of _Twice ran 2 times in one forward.*runs once"):
        model.train()(torch.randn(2, 3, 4, 4))
    with pytest.raises(RuntimeError, match="ran 2 times"):
        split.verify()
    assert not model._forward_pre_hooks and not any(m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError, match="ran 2 times"), pytest.warns(SplitFallbackWarning):
        split_model(model, "block", example_inputs=(torch.randn(2, 3, 4, 4),))


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


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.head = nn.Conv2d(3, 4, 1), nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > -1e9:  # data-dependent: not traceable
            x = self.stem(x)
        return self.head(x.mean((2, 3)))


@pytest.mark.parametrize("build, layer, why", [(_Skip, "a", "model input"), (_Twice, "block", "called 2 times"),
                                               (_Branchy, "stem", "could not trace")])
def test_every_fallback_warns(build, layer, why):
    with pytest.warns(SplitFallbackWarning, match=f"{why}.*falling back to the hook split") as record:
        split = split_model(build(), layer)
    assert split.mode == "hook" and why in split.reason
    assert record[0].filename == __file__, "the warning points at the caller"


def test_no_warning_when_fx_works():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SplitFallbackWarning)
        assert isinstance(split_model(timm.create_model("resnet18", num_classes=4), "layer1"), FxSplit)


@pytest.mark.parametrize("mode", ["fx", "hook"])
def test_verify_names_replaced_modules(mode):
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    split = split_model(model, "layer1", mode)
    split.verify()
    model.reset_classifier(3)
    with pytest.raises(RuntimeError, match=r"changed after it was split at 'layer1': .*'fc' replaced \(Linear -> "
                                           r"Linear\).*adv.detach\(\); attach again"):
        split.verify()


def test_verify_sync_batchnorm_and_refresh():
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    split = split_model(model, "layer1", "fx")
    nn.SyncBatchNorm.convert_sync_batchnorm(model)
    with pytest.raises(RuntimeError, match=r"'bn1' replaced \(BatchNorm2d -> SyncBatchNorm\)"):
        split.verify()

    model = torchvision.models.resnet18(num_classes=4)
    split = split_model(model, "layer1", "hook")
    bn = model.layer2[0].bn1
    bn.__class__ = type("MyBatchNorm2d", (nn.BatchNorm2d,), {})
    bn.extra = nn.Identity()
    with pytest.raises(RuntimeError, match=r"'layer2.0.bn1' changed class \(BatchNorm2d -> MyBatchNorm2d\).*"
                                           r"'layer2.0.bn1.extra' added"):
        split.verify()
    split.refresh()  # the caller's own in-place change
    split.verify()
    del model.layer2[0].bn1.extra
    with pytest.raises(RuntimeError, match="'layer2.0.bn1.extra' removed"):
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
