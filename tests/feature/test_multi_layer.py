"""Multi-layer AdvBN (issue 11): one attack perturbs the statistics at several layers, one (m, s) per layer."""

import copy

import pytest
import torch
import torch.nn.functional as F

from advbn_aug import AdvBN
from advbn_aug.feature.multi_layer import InnerHook
from advbn_aug.models.cifar_resnet import cifar_resnet, load_pretrained_cifar_resnet


def _setup(**options):
    torch.manual_seed(0)
    model = load_pretrained_cifar_resnet(20)  # trained weights: no gradient entry sits at rounding level
    adv = AdvBN("layer1", extra_layers=("layer2",), **options).attach(model)
    return model, adv


def _reference(model, f1, y, eps=1.1, alpha=0.2, steps=6):
    """docs/algorithm.md's attack written out for two layers: layer1's output and layer2's output inside the pass."""
    mu1 = f1.mean((0, 2, 3), keepdim=True)
    m1, s1 = torch.ones_like(mu1), torch.ones_like(mu1)
    m2, s2 = torch.ones(1, 32, 1, 1), torch.ones(1, 32, 1, 1)
    for _ in range(steps):
        for t in (m1, s1, m2, s2):
            t.requires_grad_(True)
        o2 = model.layer2(((f1 - mu1) * s1 + mu1 * m1).clamp(min=0))
        mu2 = o2.detach().mean((0, 2, 3), keepdim=True)
        x2 = ((o2 - mu2) * s2 + mu2 * m2).clamp(min=0)
        logits = model.linear(torch.flatten(F.adaptive_avg_pool2d(model.layer3(x2), 1), 1))
        grads = torch.autograd.grad(F.cross_entropy(logits, y), (m1, s1, m2, s2))
        with torch.no_grad():
            m1, s1, m2, s2 = ((t + alpha * g.sign()).clamp(1 - eps, 1 + eps) for t, g in zip((m1, s1, m2, s2), grads))
    return m1, s1, m2, s2


@pytest.mark.parametrize("split", ["fx", "hook"])
def test_two_layer_attack_matches_the_written_out_one(split):
    model, adv = _setup(split=split)
    ref_model = copy.deepcopy(model).eval()  # the aux BNs start as copies of the clean ones
    model.train()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)
    model(x)
    f1 = adv.cached_feature.clone()
    loss = adv.adversarial_loss(y)
    got = adv.multipliers_by_layer
    assert list(got) == ["layer1", "layer2"] and got["layer2"][0].shape == (1, 32, 1, 1)
    ref = _reference(ref_model, f1, y)
    for a, b in zip((*got["layer1"], *got["layer2"]), ref):
        torch.testing.assert_close(a, b)
    assert not torch.equal(got["layer2"][0], torch.ones_like(got["layer2"][0]))
    loss.backward()
    assert model.layer2[0].conv1.weight.grad is not None and model.layer1[0].conv1.weight.grad is None


def test_extra_layers_are_inert_in_eval_and_detach_cleanly():
    torch.manual_seed(0)
    plain = cifar_resnet(20).eval()
    model = copy.deepcopy(plain)
    keys = list(model.state_dict())
    adv = AdvBN("layer1", extra_layers=("layer2",)).attach(model)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model.eval()(x), plain(x))
    model.train()
    adv.loss(x, torch.tensor([1, 2]))
    out = adv.detach()
    assert list(out.state_dict()) == keys
    assert not any(isinstance(h, InnerHook) for m in out.modules() for h in m._forward_hooks.values())


def test_extra_layer_must_come_after_the_layer():
    with pytest.raises(ValueError, match=r"extra layer\(s\) \['conv1'\] do not run after layer 'layer1'"):
        AdvBN("layer1", extra_layers=("conv1",)).attach(cifar_resnet(20))
    with pytest.raises(ValueError, match="extra_layers must be module names other than layer"):
        AdvBN("layer1", extra_layers=("layer1",))
    with pytest.raises(ValueError, match="works with stats='batch' and a fresh attack"):
        AdvBN("layer1", extra_layers=("layer2",), warm_start=True)
    with pytest.raises(ValueError, match="is not a module"):
        AdvBN("layer1", extra_layers=("layer9",)).attach(cifar_resnet(20))
