"""AdvBN regressions from real models: the automatic clamp, the frozen prefix under other entry points, non-finite
values in the attack, channels-last outputs (issue #10). The capture (in-place ops after the layer, torch.compile) is
tested in test_capture.py, the options derived from AdvBNConfig in test_config.py."""

import logging

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from advbn_aug import attach

from .._models import tv_resnet18 as _tv_resnet18


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
