"""AdvBN plugin: numerical agreement with a hand-written docs/algorithm.md, safety properties, errors."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from advbn_aug import AdvBN, attach
from advbn_aug.feature.dual_norm import DualNorm
from advbn_aug.models.cifar_resnet import load_pretrained_cifar_resnet
from advbn_aug.split import SplitFallbackWarning

from .._reference import reference_step


def _set_eval(*mods):
    for m in mods:
        m.eval()


def _cifar_g1(model, x):
    _set_eval(model.conv1, model.bn1, model.layer1)
    return model.layer1(model.relu(model.bn1(model.conv1(x))))


def _cifar_g2(model, f):
    return model.linear(F.adaptive_avg_pool2d(model.layer3(model.layer2(f)), 1).flatten(1))


def _tv_g1(model, x):
    _set_eval(model.conv1, model.bn1, model.layer1)
    return model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))


def _tv_g2(model, f):
    return model.fc(torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(f)))), 1))


def _timm_g1(model, x):
    _set_eval(model.conv1, model.bn1, model.layer1)
    return model.layer1(model.maxpool(model.act1(model.bn1(model.conv1(x)))))


def _timm_g2(model, f):
    return model.forward_head(model.layer4(model.layer3(model.layer2(f))))


def _vit_g1(model, x):
    _set_eval(model.patch_embed, model.norm_pre, model.blocks[:2])
    x = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    return model.blocks[:2](x)


def _vit_g2(model, f):
    return model.forward_head(model.norm(model.blocks[2:](f)))


def _tiny_vit():
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, num_classes=10)


CASES = {
    "cifar_resnet20": (lambda: load_pretrained_cifar_resnet(20), "layer1", _cifar_g1, _cifar_g2, 32, True),
    "torchvision_resnet18": (lambda: torchvision.models.resnet18(num_classes=10), "layer1", _tv_g1, _tv_g2, 64, True),
    "timm_resnet18": (lambda: timm.create_model("resnet18", num_classes=10), 1, _timm_g1, _timm_g2, 64, True),
    "timm_vit_tokens": (_tiny_vit, "blocks.1", _vit_g1, _vit_g2, 32, False),
}


def _needs_shared(name, request):
    if name == "cifar_resnet20":
        request.getfixturevalue("shared_data")


def _bn_names(model):
    return {n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@pytest.mark.parametrize("split", ["fx", "hook"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_hand_written_algorithm(name, split, request):
    """Multipliers, both loss terms and every gradient agree with a direct implementation of docs/algorithm.md."""
    _needs_shared(name, request)
    build, layer, g1, g2, size, clamp = CASES[name]
    torch.manual_seed(0)
    model = build()
    clean_ref, adv_ref = copy.deepcopy(model), copy.deepcopy(model)
    x = torch.randn(8, 3, size, size)
    y = torch.randint(0, 10, (8,))

    adv = AdvBN(layer, split=split).attach(model)
    assert adv.split.mode == split
    model.train()
    out = model(x)
    clean = F.cross_entropy(out, y)
    adv_term = adv.adversarial_loss(y)
    (clean + adv_term).backward()

    ref_clean, ref_adv, ref_m, ref_s = reference_step(clean_ref, adv_ref, g1, g2, x, y, clamp=clamp)
    m, s = adv.last_multipliers
    c = ref_m.numel()
    assert m.shape == (1, c, 1, 1) and s.shape == (1, c, 1, 1)
    torch.testing.assert_close(m, ref_m.reshape(1, c, 1, 1))
    torch.testing.assert_close(s, ref_s.reshape(1, c, 1, 1))
    assert not torch.equal(m, torch.ones_like(m)), "the attack moved nothing"
    torch.testing.assert_close(clean.detach(), ref_clean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(adv_term.detach(), ref_adv, rtol=1e-5, atol=1e-5)

    bn_names = _bn_names(clean_ref)
    ref_clean_p = dict(clean_ref.named_parameters())
    ref_adv_p = dict(adv_ref.named_parameters())
    checked = 0
    for pname, p in model.named_parameters():
        if ".aux_bn." in pname:
            ref_grad = ref_adv_p[pname.replace(".aux_bn", "")].grad
        elif pname.rsplit(".", 1)[0] in bn_names:
            ref_grad = ref_clean_p[pname].grad
        else:
            grads = [g for g in (ref_clean_p[pname].grad, ref_adv_p[pname].grad) if g is not None]
            ref_grad = sum(grads) if grads else None
        if not p.requires_grad:
            assert p.grad is None
            continue
        if ref_grad is None:
            assert p.grad is None or torch.count_nonzero(p.grad) == 0, pname
            continue
        torch.testing.assert_close(p.grad, ref_grad, rtol=1e-4, atol=1e-5, msg=lambda m, n=pname: f"{n}: {m}")
        checked += 1
    assert checked > 5


def test_fx_and_hook_paths_agree(shared_data):
    torch.manual_seed(1)
    base = load_pretrained_cifar_resnet(20)
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    results = []
    for split in ("fx", "hook"):
        model = copy.deepcopy(base)
        adv = AdvBN("layer1", split=split).attach(model)
        model.train()
        loss = adv.loss(x, y)
        results.append((loss.detach(), *adv.last_multipliers))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so AdvBN falls back to hook substitution."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        if x.sum() > -1e9:
            x = self.stem(x)
        return self.head(self.body(x).mean((2, 3)))


def test_untraceable_model_falls_back_to_hooks():
    model = _Branchy()
    with pytest.warns(SplitFallbackWarning, match="could not trace"):
        adv = attach(model, "stem")
    assert adv.split.mode == "hook" and "trace" in adv.split.reason
    assert isinstance(model.body[1], DualNorm) and not isinstance(model.stem[1], DualNorm)
    model.train()
    loss = adv.loss(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert torch.isfinite(loss) and model.head.weight.grad is not None
    assert model.stem[0].weight.grad is None


def test_convnext_layernorm_path():
    """LayerNorm models: no BatchNorm downstream, shared norms by default, duplicated with dual_ln=True."""
    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", num_classes=5)
    keys = list(model.state_dict())
    adv = attach(model, "stages.1")
    assert adv.dual_norms == ()
    model.train()
    x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 5, (4,))
    loss = adv.loss(x, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert list(adv.detach().state_dict()) == keys

    adv = attach(model, "stages.1", dual_ln=True)
    assert len(adv.dual_norms) > 0 and all(isinstance(m, (nn.LayerNorm, nn.GroupNorm)) for m in adv.dual_norms)
    assert torch.isfinite(adv.loss(x, y))
    assert list(adv.detach().state_dict()) == keys


def test_token_features_default_to_no_clamp():
    torch.manual_seed(0)
    model = _tiny_vit()
    adv = attach(model, "blocks.1")
    model.train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    model(x)
    f = adv.cached_feature
    m, s = adv.attack(f, y)
    assert m.shape == (1, 1, f.shape[-1])
    assert (adv.perturb(f, m, s) < 0).any(), "token features must not be clamped at 0 by default"
    adv.config.token_clamp_min = 0.0
    assert (adv.perturb(f, m, s) >= 0).all()


@pytest.mark.parametrize("name", ["cifar_resnet20", "timm_vit_tokens"])
def test_eval_mode_is_bitwise_identical(name, request):
    _needs_shared(name, request)
    build, layer = CASES[name][:2]
    torch.manual_seed(0)
    model = build().eval()
    plain = copy.deepcopy(model)
    attach(model, layer)
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


def test_detach_round_trip(shared_data):
    model = load_pretrained_cifar_resnet(20)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types = {n: type(m) for n, m in model.named_modules()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    adv = attach(model, "layer1")
    assert any(".aux_bn." in k for k in model.state_dict())
    assert not model.conv1.weight.requires_grad
    returned = adv.detach()
    assert returned is model
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert torch.equal(after[k], before[k]), k
    assert {n: type(m) for n, m in model.named_modules()} == types
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    # the exported model loads into the plain architecture
    fresh = load_pretrained_cifar_resnet(20)
    fresh.load_state_dict(after, strict=True)


def test_detach_keeps_trained_clean_weights(shared_data):
    model = load_pretrained_cifar_resnet(20)
    adv = attach(model, "layer1", steps=2)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    adv.loss(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))).backward()
    opt.step()
    trained = {k: v.clone() for k, v in model.state_dict().items() if ".aux_bn." not in k}
    plain = adv.detach().state_dict()
    assert set(plain) == set(trained)
    assert all(torch.equal(plain[k], trained[k]) for k in plain)


def test_attack_touches_no_parameter_gradient_and_no_running_stats(shared_data):
    model = load_pretrained_cifar_resnet(20)
    adv = attach(model, "layer1")
    model.train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    with torch.no_grad():
        model(x)
    f = adv.cached_feature
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    m1, s1 = adv.attack(f, y)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    m2, s2 = adv.attack(f, y)
    assert torch.equal(m1, m2) and torch.equal(s1, s2)
    assert model.training and model.layer2.training, "attack must restore train mode"


def test_dropout_and_drop_path_frozen_during_attack():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, num_classes=10,
                              drop_rate=0.5, drop_path_rate=0.5)
    adv = attach(model, "blocks.1")
    model.train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    model(x)
    f = adv.cached_feature
    results = [adv.attack(f, y) for _ in range(3)]
    for m, s in results[1:]:
        assert torch.equal(m, results[0][0]) and torch.equal(s, results[0][1])


def test_prefix_frozen_and_bn_eval_in_train_mode(shared_data):
    model = load_pretrained_cifar_resnet(20)
    adv = attach(model, "layer1")
    model.train()
    stem_stats = model.bn1.running_mean.clone()
    suffix_stats = model.layer2[0].bn1.running_mean.clone()
    adv.loss(torch.randn(8, 3, 32, 32) * 3, torch.randint(0, 10, (8,))).backward()
    assert torch.equal(model.bn1.running_mean, stem_stats)
    assert not torch.equal(model.layer2[0].bn1.running_mean, suffix_stats)
    assert not torch.equal(model.layer2[0].bn1.aux_bn.running_mean, suffix_stats)
    assert model.conv1.weight.grad is None and model.layer1[0].conv1.weight.grad is None
    assert model.layer2[0].conv1.weight.grad is not None


def test_deepcopy_and_model_ema(shared_data):
    from timm.utils import ModelEmaV3

    model = load_pretrained_cifar_resnet(20)
    adv = attach(model, "layer1")
    ema = ModelEmaV3(model, decay=0.9)
    clone = copy.deepcopy(model)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    clone.train()
    clone(x)
    assert adv.cached_feature is None, "the copy's hook must feed the copy's AdvBN, not the original"
    clone_adv = next(h.owner for h in clone.layer1._forward_hooks.values())
    assert clone_adv is not adv and clone_adv.model is clone
    clone_adv.adversarial_loss(y).backward()
    model.train()
    adv.loss(x, y).backward()
    ema.update(model)
    ema.module.eval()
    with torch.no_grad():
        assert torch.isfinite(ema.module(x)).all()
    assert clone_adv.detach() is clone and adv.detach() is model


def test_fx_tracing_an_attached_model(shared_data):
    model = load_pretrained_cifar_resnet(20)
    attach(model, "layer1")
    model.eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x))


def test_autocast_bfloat16_keeps_float32_statistics(shared_data):
    model = load_pretrained_cifar_resnet(20)
    adv = attach(model, "layer1")
    model.train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = adv.loss(x, y)
    loss.backward()
    m, s = adv.last_multipliers
    assert m.dtype == torch.float32 and s.dtype == torch.float32
    assert torch.isfinite(loss)


def test_channels_last(shared_data):
    model = load_pretrained_cifar_resnet(20).to(memory_format=torch.channels_last)
    ref = copy.deepcopy(model)
    adv, adv_ref = attach(model, "layer1"), attach(ref.to(memory_format=torch.contiguous_format), "layer1")
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    model.train()
    ref.train()
    a = adv.loss(x.to(memory_format=torch.channels_last), y)
    b = adv_ref.loss(x, y)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------- errors
def test_unknown_layer_lists_candidates():
    model = timm.create_model("resnet18", num_classes=10)
    with pytest.raises(ValueError, match=r"'layr1'.*Did you mean 'layer1'.*layer2"):
        attach(model, "layr1")
    with pytest.raises(ValueError, match="feature_info index 9 is out of range"):
        attach(model, 9)




class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def test_unsupported_feature_rank():
    model = _MLP().train()
    attach(model, "fc1")
    with pytest.raises(ValueError, match=r"output of layer 'fc1' has shape \(2, 8\).*\(N, C, H, W\)"):
        model(torch.randn(2, 3, 4))


def test_wrong_targets_and_missing_forward(shared_data):
    model = load_pretrained_cifar_resnet(20)
    adv = attach(model, "layer1")
    model.train()
    with pytest.raises(RuntimeError, match="no cached feature"):
        adv.adversarial_loss(torch.zeros(4, dtype=torch.long))
    model(torch.randn(4, 3, 32, 32))
    with pytest.raises(ValueError, match=r"targets have shape \(3,\) but the batch has 4 samples"):
        adv.adversarial_loss(torch.zeros(3, dtype=torch.long))
    model.eval()
    with pytest.raises(RuntimeError, match="call model.train"):
        adv.loss(torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))


def test_non_finite_feature_raises_with_layer_name(shared_data):
    model = load_pretrained_cifar_resnet(20)
    adv = attach(model, "layer1")
    model.train()
    x = torch.randn(4, 3, 32, 32)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="layer 'layer1' contains NaN or Inf"):
        adv.loss(x, torch.zeros(4, dtype=torch.long))


def test_attaching_twice(shared_data):
    model = load_pretrained_cifar_resnet(20)
    adv = attach(model, "layer1")
    with pytest.raises(RuntimeError, match="already attached"):
        adv.attach(load_pretrained_cifar_resnet(20))
    with pytest.raises(RuntimeError, match="already has an AdvBN attached at layer 'layer1'"):
        attach(model, "layer2")
    with pytest.raises(TypeError, match="before wrapping"):
        attach(nn.DataParallel(load_pretrained_cifar_resnet(20)), "module.layer1")
    adv.detach()
    with pytest.raises(RuntimeError, match="not attached"):
        adv.detach()
    attach(model, "layer2").detach()


