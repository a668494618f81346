"""split_model (advbn_aug.split): both modes reproduce the model, and the fallback from fx to hook."""

import warnings

import pytest
import timm
import torch
import torchvision
from torch import nn

from advbn_aug.split import FxSplit, HookSplit, SplitFallbackWarning, split_model


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
