"""Layers where AdvBN does nothing (a BatchNorm right after the layer undoes it): detection and refusal."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from advbn_aug import AdvBN, attach
from advbn_aug.feature.inert import InertLayer, batchnorms_after
from advbn_aug.feature.stats import feature_stats, perturb_stats
from advbn_aug.split import split_model


class Net(nn.Module):
    """``stage`` (a signed conv output) goes straight into ``norm`` (a BatchNorm) then ``act``; ``post`` ends in a
    ReLU and feeds a convolution. ``route`` puts channel-keeping ops between ``stage`` and ``norm``."""

    def __init__(self, route: str = "direct") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.stage = nn.Conv2d(6, 6, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.mix = nn.Conv2d(6, 6, 1)
        wide = 12 if route == "cat" else 6
        self.norm = nn.BatchNorm2d(wide)
        self.act = nn.ReLU()
        self.post = nn.Sequential(nn.Conv2d(wide, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
        self.route = route

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stage(self.stem(x))
        if self.route == "conv":  # a convolution mixes the channels before the BatchNorm: AdvBN acts
            f = self.mix(f)
        elif self.route == "cat":  # pooled, concatenated along the channels: still undone
            f = torch.cat([self.pool(f), self.pool(f)], 1)
        elif self.route == "cat_h":  # concatenated along the height: channel statistics mix, AdvBN acts
            f = torch.cat([self.pool(f), self.pool(f)], 2)
        return self.head(self.post(self.act(self.norm(f))))


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("layer, undone", [("stage", True), ("post", False), ("act", False)])
def test_premise_train_mode_batchnorm_undoes_positive_multipliers(layer, undone):
    """What the check relies on: with s > 0 and no clamp, the train-mode suffix is blind to the multipliers."""
    torch.manual_seed(0)
    model, (x, _) = Net(), _batch()
    split = split_model(model, layer, "fx")
    feats = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: feats.setdefault("f", o.detach()))
    model.eval()(x)
    handle.remove()
    f = feats["f"]
    mean = feature_stats(f).mean
    g = torch.Generator().manual_seed(2)
    m, s = 0.5 + 1.5 * torch.rand(2, *mean.shape, generator=g)
    with torch.no_grad():
        clean = split.run_suffix(f, train=True)
        perturbed = split.run_suffix(perturb_stats(f, mean, m, s, None), train=True)
    split.close()
    assert torch.allclose(clean, perturbed, atol=1e-4) == undone
    assert (batchnorms_after(split) == ("norm",)) == undone


@pytest.mark.parametrize("route, found", [("direct", ("norm",)), ("cat", ("norm",)), ("conv", ()), ("cat_h", ())])
def test_batchnorms_after_follows_channel_keeping_ops_only(route, found):
    split = split_model(Net(route), "stage", "fx")
    assert batchnorms_after(split) == found
    split.close()


def test_hook_split_is_never_flagged():
    split = split_model(Net(), "stage", "hook")
    assert batchnorms_after(split) == ()
    split.close()


def _snapshot(model: nn.Module) -> tuple:
    return ([(n, type(m)) for n, m in model.named_modules()], {k: v.clone() for k, v in model.state_dict().items()},
            [p.requires_grad for p in model.parameters()],
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()))


def test_attach_refuses_when_no_clamp_can_help_and_leaves_the_model_as_it_was():
    model = Net()
    before = _snapshot(model)
    with pytest.raises(ValueError, match=r"AdvBN would do nothing at layer 'stage' \(clamp_min=None\): its output "
                                         r"goes only into BatchNorm 'norm'") as err:
        attach(model, "stage", clamp_min=None)
    assert isinstance(err.value, InertLayer)
    assert "AdvBN('act')" in str(err.value) and "stats='instance'" in str(err.value)
    after = _snapshot(model)
    assert after[0] == before[0] and after[2:] == before[2:]
    assert all(torch.equal(after[1][k], v) for k, v in before[1].items())
    attach(model, "act").detach()  # the suggested layer is accepted


def test_auto_clamp_on_a_signed_output_raises_at_the_first_attack():
    torch.manual_seed(0)
    model, (x, y) = Net(), _batch()
    adv = attach(model, "stage")  # clamp_min="auto": undecided until the first batch
    model.train()
    model(x)
    with pytest.raises(InertLayer, match="clamp_min='auto' found a signed output"):
        adv.adversarial_loss(y)
    assert adv.clamp is None and adv.last_multipliers is None
    adv.detach()


@pytest.mark.parametrize("options", [{"stats": "instance"}, {"clamp_min": 0.0}])
def test_instance_statistics_or_a_clamp_are_accepted(options):
    torch.manual_seed(0)
    model, (x, y) = Net(), _batch()
    adv = attach(model, "stage", **options)
    model.train()
    model(x)
    assert torch.isfinite(adv.adversarial_loss(y))
    adv.detach()


@pytest.mark.parametrize("build, layer, after", [
    (lambda: torchvision.models.densenet121(num_classes=4), "features.denseblock1", "features.transition1.relu"),
    (lambda: torchvision.models.densenet121(num_classes=4), "features.transition1", "features.transition2.relu"),
    (lambda: timm.create_model("resnetv2_50", num_classes=4), "stages.0", "stages.1.blocks.0.norm1"),
], ids=["densenet_block", "densenet_transition", "resnetv2_stage"])
def test_real_models_refused_with_a_working_layer_named(build, layer, after):
    model = build()
    with pytest.raises(InertLayer, match=rf"at layer '{layer}'.*e\.g\. AdvBN\('{after}'\)"):
        attach(model, layer, clamp_min=None)
    adv = attach(model, after, clamp_min=None)
    assert adv.split.mode == "fx"
    adv.detach()


def test_resnet_layer1_is_not_flagged():
    split = split_model(torchvision.models.resnet18(num_classes=4), "layer1", "fx")
    assert batchnorms_after(split) == ()
    split.close()


class DeadSuffix(nn.Module):
    """The layer's output is negative everywhere and a ReLU follows: the loss has no gradient w.r.t. (m, s)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = -self.stage(x).abs() - 1
        return self.head(F.relu(f).mean((2, 3)))


@pytest.mark.parametrize("split", ["fx", "hook"])
def test_zero_attack_gradient_warns_once(split):
    torch.manual_seed(0)
    model, (x, y) = DeadSuffix(), _batch(4)
    adv = AdvBN("stage", clamp_min=None, split=split).attach(model)
    model.train()
    with pytest.warns(RuntimeWarning, match=r"AdvBN at 'stage': the attack's gradient .* was exactly zero"):
        model(x)
        adv.adversarial_loss(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x)
        adv.adversarial_loss(y)  # once only
    adv.detach()


def test_no_warning_when_the_attack_moves():
    torch.manual_seed(0)
    model, (x, y) = Net(), _batch()
    adv = attach(model, "act")
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x)
        adv.adversarial_loss(y)
    m, s = adv.last_multipliers
    assert not ((m == 1).all() and (s == 1).all())
    adv.detach()
