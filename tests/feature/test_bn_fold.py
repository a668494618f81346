"""Convolution + BatchNorm folding for the attack passes (issue 12: the same attack, faster)."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from advbn_aug import AdvBN
from advbn_aug.feature.bn_fold import FoldedConvBN, fold_conv_bn
from advbn_aug.feature.dual_norm import convert_dual_norm, routed
from advbn_aug.models.cifar_resnet import cifar_resnet, load_pretrained_cifar_resnet


def _trained_bn(c: int, affine: bool = True) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, affine=affine)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        if affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return bn.eval()


@pytest.mark.parametrize("bias,affine", [(False, True), (True, True), (False, False)])
def test_folded_conv_bn_equals_bn_of_conv_in_eval(bias, affine):
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3, padding=1, bias=bias), _trained_bn(5, affine)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(FoldedConvBN(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_folded_conv_bn_follows_the_dual_route_and_train_mode():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1, bias=False), _trained_bn(4)
    (dual,) = convert_dual_norm([bn])
    with torch.no_grad():
        dual.aux_bn.running_mean.add_(0.7)  # the adversarial copy differs from the clean one
    folded, x = FoldedConvBN(conv, dual), torch.randn(2, 3, 6, 6)
    clean = folded(x)
    torch.testing.assert_close(clean, dual(conv(x)), rtol=1e-5, atol=1e-5)
    with routed([dual], "adv"):
        torch.testing.assert_close(folded(x), dual.aux_bn(conv(x)), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(folded(x), clean)
    dual.train()
    ref = copy.deepcopy(dual)
    torch.testing.assert_close(folded(x), ref(conv(x)))  # train mode: batch statistics, not folded


def test_fold_conv_bn_on_a_traced_resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_var.uniform_(0.5, 2)
                m.running_mean.uniform_(-0.2, 0.2)
    gm = torch.fx.symbolic_trace(model)
    code = gm.code
    folded = fold_conv_bn(gm)
    assert sum(isinstance(m, FoldedConvBN) for m in folded.modules()) == 20  # every conv of resnet18 feeds a BN
    assert gm.code == code  # the source graph is untouched
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert folded.get_submodule("_folded_0").conv is model.conv1  # shares the model's modules


@pytest.mark.parametrize("build", [
    lambda: load_pretrained_cifar_resnet(20),  # the agreement tests' model (shared pretrained weights)
    lambda: timm.create_model("resnet18", pretrained=False, num_classes=10),
])
def test_fold_bn_gives_the_same_multipliers(build):
    torch.manual_seed(0)
    model = build()
    twin = copy.deepcopy(model)
    plain, folded = AdvBN("layer1").attach(model), AdvBN("layer1", fold_bn=True).attach(twin)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    losses = []
    for m, adv in ((model, plain), (twin, folded)):
        m.train()
        losses.append(adv.loss(x, y))
    assert not torch.equal(plain.last_multipliers[0], torch.ones_like(plain.last_multipliers[0]))
    torch.testing.assert_close(folded.last_multipliers[0], plain.last_multipliers[0])
    torch.testing.assert_close(folded.last_multipliers[1], plain.last_multipliers[1])
    torch.testing.assert_close(losses[0], losses[1])


def test_fold_bn_gives_the_same_attack_gradients_along_the_attack():
    """torchvision ResNet-18 (plain BatchNorm2d everywhere), in float64 so that rounding cannot move a ReLU kink: at
    every point of the 6-step attack the folded suffix gives the unfolded one's gradients, hence the same steps.
    (In float32 a pre-activation within rounding of 0 can switch a ReLU and change one gradient entry.)"""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).double()
    adv = AdvBN("layer1").attach(model)
    model.train()
    x, y = torch.randn(8, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (8,))
    model(x)
    f = adv.cached_feature.clone()
    adv.discard()
    eager, fold = adv.split.eval_suffix(lambda gm: gm), adv.split.eval_suffix(fold_conv_bn)
    mean = f.mean((0, 2, 3), keepdim=True)
    m, s = torch.ones_like(mean), torch.ones_like(mean)
    with adv.route("adv"):
        for _ in range(6):
            grads = []
            for fn in (eager, fold):
                mm, ss = m.clone().requires_grad_(), s.clone().requires_grad_()
                loss = F.cross_entropy(fn(((f - mean) * ss + mean * mm).clamp_min(0)), y)
                grads.append(torch.autograd.grad(loss, (mm, ss)))
            torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-9, atol=1e-12)
            m = (m + 0.2 * grads[0][0].sign()).clamp(-0.1, 2.1)
            s = (s + 0.2 * grads[0][1].sign()).clamp(-0.1, 2.1)
    assert not torch.equal(m, torch.ones_like(m))


def test_fold_bn_refuses_the_hook_split():
    with pytest.raises(ValueError, match="fold_bn=True needs the torch.fx split"):
        AdvBN("layer1", fold_bn=True, split="hook").attach(cifar_resnet(20))


def test_timm_batchnormact_folds_with_its_activation():
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=10)
    adv = AdvBN("blocks.2").attach(model)  # timm's leaf modules keep BatchNormAct2d whole in the suffix graph
    made = {}

    def fold(gm):
        made["gm"] = fold_conv_bn(gm)
        return made["gm"]

    eager, folded = adv.split.eval_suffix(lambda gm: gm), adv.split.eval_suffix(fold)
    assert sum(isinstance(m, FoldedConvBN) for m in made["gm"].modules()) >= 10
    f = torch.randn(2, 40, 8, 8)
    with torch.no_grad(), adv.route("adv"):
        torch.testing.assert_close(folded(f), eager(f), rtol=1e-4, atol=1e-4)
