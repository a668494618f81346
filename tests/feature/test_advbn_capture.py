"""AdvBN regressions from real models: in-place ops after the layer, the automatic clamp, the frozen prefix under
other entry points, non-finite values in the attack, and the options derived from AdvBNConfig (issue #10)."""

import copy
import inspect
import logging
from dataclasses import fields

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from advbn_aug import AdvBN, AdvBNConfig, attach


def _tv_resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def _real_output(model, layer, x):
    """The layer's true output in a train-mode forward with an eval-mode prefix, cloned before anything else runs."""
    got = {}

    def keep(module, inputs, output):
        got.setdefault("f", output.detach().clone())  # returns None: the model's output stays its own

    h = model.get_submodule(layer).register_forward_hook(keep)
    model(x)
    h.remove()
    return got["f"]


# ---------------------------------------------------------------------------------------------- in-place ops
@pytest.mark.parametrize("layer", ["bn1", "layer1.0.bn2"])  # ReLU(inplace=True) / `out += identity` follow
def test_in_place_op_after_the_layer_is_detected(layer):
    model = _tv_resnet18()
    adv = attach(model, layer, split="fx" if layer == "bn1" else "hook")  # the block's suffix reads its input
    model.train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    model(x)
    with pytest.raises(RuntimeError, match=rf"layer '{layer}' was modified in place.*capture='copy'"):
        adv.adversarial_loss(y)


@pytest.mark.parametrize("layer", ["bn1", "layer1.0.bn2"])
def test_capture_copy_attacks_the_true_layer_output(layer):
    model = _tv_resnet18()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    adv = attach(model, layer, capture="copy", split="fx" if layer == "bn1" else "hook")
    model.train()
    ref_model = _tv_resnet18()
    ref_model.train()
    for m in [ref_model.conv1, ref_model.bn1, ref_model.layer1]:
        m.eval()  # the frozen prefix (bn1 / layer1.0.bn2 lie in it)
    ref = _real_output(ref_model, layer, x)
    model(x)
    f = adv.cached_feature
    assert (ref < 0).any(), "the true output is signed (pre-ReLU)"
    torch.testing.assert_close(f, ref)
    loss = adv.adversarial_loss(y)
    assert torch.isfinite(loss)


def test_block_outputs_are_not_modified_in_place():
    """The paper's layer: no in-place op touches it, so the default (by reference) costs nothing extra."""
    model = _tv_resnet18()
    adv = attach(model, "layer1")
    model.train()
    y = torch.randint(0, 10, (4,))
    model(torch.randn(4, 3, 32, 32))
    assert torch.isfinite(adv.adversarial_loss(y))


# ---------------------------------------------------------------------------------------------- the clamp
def test_auto_clamp_keeps_the_paper_clamp_on_post_relu_layers(caplog):
    model = _tv_resnet18()
    adv = attach(model, "layer1")
    assert adv.config.clamp_min == "auto" and adv.clamp == "auto"
    model.train()
    with caplog.at_level(logging.INFO, logger="advbn_aug"):
        adv.loss(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
        adv.loss(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    assert adv.clamp == 0.0
    assert sum("clamp_min='auto' -> 0.0" in r.getMessage() for r in caplog.records) == 1, "logged once"


@pytest.mark.parametrize("build, layer", [
    (lambda: timm.create_model("convnext_atto", num_classes=4), "stages.0"),
    (lambda: torchvision.models.densenet121(num_classes=4), "features.transition1"),
    (lambda: timm.create_model("efficientnet_b0", num_classes=4), "blocks.1"),
])
def test_auto_clamp_is_off_on_signed_layers(build, layer):
    torch.manual_seed(0)
    model = build()
    adv = attach(model, layer)
    model.train()
    model(torch.randn(2, 3, 64, 64))
    f = adv.cached_feature
    assert (f < 0).float().mean() > 0.2, "the layer output is signed"
    ones = torch.ones(1, f.shape[1], 1, 1)
    torch.testing.assert_close(adv.perturb(f, ones, ones), f, rtol=1e-5, atol=1e-5)  # identity, nothing zeroed
    assert adv.clamp is None
    adv.discard()


@pytest.mark.parametrize("token_clamp_min, expected", [(None, None), (0.5, 0.5), ("auto", None)])
def test_clamp_reports_the_setting_for_token_features(token_clamp_min, expected):
    """A ViT's (N, T, C) tokens follow token_clamp_min: after training, adv.clamp says so, not clamp_min's 'auto'."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3, num_classes=4)
    adv = attach(model, "blocks.1", steps=1, token_clamp_min=token_clamp_min)
    assert adv.clamp == "auto", "undecided before the first batch (the feature's rank is not known yet)"
    model.train()
    adv.loss(torch.randn(2, 3, 32, 32), torch.tensor([0, 3]))
    assert adv.clamp == expected and f"clamp={expected!r}" in repr(adv)  # "auto": tokens are signed -> None


def test_forced_clamp_still_applies():
    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", num_classes=4)
    adv = attach(model, "stages.0", clamp_min=0.0)
    model.train()
    model(torch.randn(2, 3, 64, 64))
    f = adv.cached_feature
    ones = torch.ones(1, f.shape[1], 1, 1)
    assert (adv.perturb(f, ones, ones) >= 0).all() and adv.clamp == 0.0


# ---------------------------------------------------------------------------------------------- frozen prefix
def test_prefix_norms_stay_in_eval_mode_through_forward_features():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=4)
    attach(model, "layer1")
    model.train()
    stem = model.bn1.running_mean.clone()
    inner = model.layer1[0].bn1.running_mean.clone()
    after = model.layer2[0].bn1.running_mean.clone()
    model.forward_features(torch.randn(4, 3, 32, 32) * 3 + 1)
    assert torch.equal(model.bn1.running_mean, stem) and torch.equal(model.layer1[0].bn1.running_mean, inner)
    assert not torch.equal(model.layer2[0].bn1.running_mean, after), "the suffix still trains"


def test_detach_restores_prefix_modes_and_removes_every_hook():
    model = timm.create_model("resnet18", num_classes=4)
    adv = attach(model, "layer1")
    model.train()
    model.forward_features(torch.randn(2, 3, 32, 32))
    adv.detach()
    assert all(m.training for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------------------------------------- non-finite
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.stem(x))


def test_non_finite_attack_gradients_never_reach_the_multipliers():
    torch.manual_seed(0)
    model = _Net()
    adv = attach(model, "stem")
    model.train()
    model(torch.randn(4, 3, 8, 8))

    def nan_criterion(logits, y):
        return F.cross_entropy(logits, y) * float("nan")

    with pytest.warns(RuntimeWarning, match="non-finite attack gradient entries"):
        adv.adversarial_loss(torch.tensor([0, 1, 2, 0]), nan_criterion)
    m, s = adv.last_multipliers
    assert torch.isfinite(m).all() and torch.isfinite(s).all()


def test_non_finite_perturbed_feature_raises():
    torch.manual_seed(0)
    model = _Net()
    adv = attach(model, "stem", eps=1e38, step_size=1e38, steps=1, clamp_min=None)
    model.train()
    model(torch.randn(4, 3, 8, 8) * 1e3)
    with pytest.raises(FloatingPointError, match="perturbed feature at layer 'stem' contains NaN or Inf"):
        adv.adversarial_loss(torch.tensor([0, 1, 2, 0]))


# ---------------------------------------------------------------------------------------------- options
def test_every_config_field_is_an_advbn_keyword():
    params = inspect.signature(AdvBN).parameters
    for f in fields(AdvBNConfig):
        assert f.name in params and params[f.name].default == f.default, f.name
        assert f.metadata.get("help"), f"{f.name} has no help text"
    adv = AdvBN("layer2", capture="copy", dual_ln=True, check_finite=False, token_clamp_min=0.0)
    assert adv.config == AdvBNConfig(layer="layer2", capture="copy", dual_ln=True, check_finite=False,
                                     token_clamp_min=0.0)
    with pytest.raises(TypeError, match=r"unknown AdvBN option\(s\) \['epsilon'\].*'eps'"):
        AdvBN("layer1", epsilon=1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(clamp_min="always"), "clamp_min must be 'auto', a number or None"),
    (dict(capture="deep"), "capture must be 'check' or 'copy'"),
])
def test_bad_new_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdvBN("layer1", **kwargs)


def test_discard_drops_the_cached_feature():
    model = _tv_resnet18()
    adv = attach(model, "layer1")
    model.train()
    model(torch.randn(2, 3, 32, 32))
    adv.discard()
    with pytest.raises(RuntimeError, match="no cached feature"):
        adv.adversarial_loss(torch.zeros(2, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- channels-last
def _tiny_swin():
    torch.manual_seed(0)
    return timm.create_model("swin_tiny_patch4_window7_224", img_size=56, window_size=7, embed_dim=16,
                             depths=(1, 1), num_heads=(1, 1), num_classes=4)


def test_channels_last_stage_outputs_are_refused_until_layout_is_given():
    model = _tiny_swin()
    adv = attach(model, "layers.0")
    model.train()
    x, y = torch.randn(2, 3, 56, 56), torch.tensor([0, 3])
    with pytest.raises(ValueError, match=r"looks channels-last \(N, H, W, C\).*layout='nhwc'"):
        model(x)
    adv.detach()
    adv = attach(model, "layers.0", layout="nhwc")
    model(x)
    f = adv.cached_feature
    loss = adv.adversarial_loss(y)
    m, s = adv.last_multipliers
    assert m.shape == (1, f.shape[-1], 1, 1), "one multiplier per channel (the last axis)"
    loss.backward()


def test_nhwc_statistics_are_per_last_axis():
    model = _tiny_swin()
    adv = attach(model, "layers.0", layout="nhwc", clamp_min=None)
    f = torch.randn(2, 14, 14, 16) * torch.linspace(0.5, 3, 16) + torch.linspace(-1, 1, 16)
    m = torch.full((1, 1, 16), 2.0)
    s = torch.full((1, 1, 16), 0.5)
    out = adv.perturb(f, m, s)
    mu, sd = f.mean((0, 1, 2)), f.std((0, 1, 2))
    torch.testing.assert_close(out.mean((0, 1, 2)), 2.0 * mu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.std((0, 1, 2)), 0.5 * sd, rtol=1e-4, atol=1e-4)


def test_torchvision_channels_last_outputs_are_refused_by_shape():
    model = torchvision.models.swin_t(num_classes=4)
    attach(model, "features.1")
    model.train()
    with pytest.raises(ValueError, match="dims 1 and 2 are equal and dim 3 differs"):
        model(torch.randn(1, 3, 64, 64))


# ---------------------------------------------------------------------------------------------- torch.compile
class _InPlaceBlockNet(nn.Module):
    """A torchvision BasicBlock as the layer: its output is modified in place inside the block (`out += identity`,
    ReLU(inplace=True)), so the traced tensor's version counter differs from the eager output's."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.layer1 = torchvision.models.resnet.BasicBlock(4, 4)
        self.head = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.layer1(self.stem(x)))


def _compiler_missing() -> str | None:
    """Why torch.compile's default (inductor) backend cannot run here, or None."""
    import shutil

    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "no C++ compiler for inductor's CPU kernels"
    return None


@pytest.mark.slow  # compiling takes tens of seconds on a CPU
def test_compiled_model_trains_with_the_default_capture():
    """Attach, then torch.compile (README); the default capture='check' trains and matches the eager model."""
    if (why := _compiler_missing()) is not None:
        pytest.skip(why)
    torch.manual_seed(0)
    model = _InPlaceBlockNet()
    eager = copy.deepcopy(model)
    adv, adv_eager = attach(model, "layer1"), attach(eager, "layer1")
    assert adv.config.capture == "check"
    compiled = torch.compile(model)
    opts = [torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1) for m in (model, eager)]
    model.train()
    eager.train()
    g = torch.Generator().manual_seed(0)
    for step in range(2):
        x, y = torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)
        losses = []
        for a, net, opt in ((adv, compiled, opts[0]), (adv_eager, eager, opts[1])):
            loss = a.loss(x, y, model=net)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5, msg=f"step {step}")
    torch.testing.assert_close(adv.last_multipliers[0], adv_eager.last_multipliers[0])
    state = {k: v.clone() for k, v in model.state_dict().items()}  # a refused batch is rolled back, compiled too
    x[0] = float("nan")
    with pytest.raises(FloatingPointError, match="contains NaN or Inf"):
        adv.loss(x, y, model=compiled)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
