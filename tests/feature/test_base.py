"""StatsAugmenter (MixStyle, DSU) as hooks: inertness, attach/detach, copies, tracing, stacking, Policy, errors."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from scipy import stats
from torch import nn

from advbn_aug.feature.advbn import AdvBN
from advbn_aug.feature.base import StatsAugmenter, attached_augmenters, check_positive, sample_beta
from advbn_aug.feature.dsu import DSU
from advbn_aug.feature.mixstyle import MixStyle
from advbn_aug.policy import FeatureAugmenter, Policy, PolicyConfig

AUGMENTERS = [MixStyle, DSU]


class Tiny(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.layer2(self.layer1(self.stem(x))).mean((2, 3)))


def _snapshot(model):
    return (list(model.state_dict()), [(n, type(m)) for n, m in model.named_modules()],
            [(n, len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()])


def _resnet18(kind):
    torch.manual_seed(0)
    if kind == "timm":
        return timm.create_model("resnet18", pretrained=False, num_classes=4)
    return torchvision.models.resnet18(weights=None, num_classes=4)


@pytest.mark.parametrize("alpha", [0.1, 1.0, 4.0])
def test_sample_beta_matches_the_distribution(alpha):
    g = torch.Generator().manual_seed(0)
    s = sample_beta(alpha, 4000, generator=g, dtype=torch.float64)  # float32 rounds mass near 1 to 1.0
    assert s.shape == (4000,) and torch.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()
    assert stats.kstest(s.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    again = sample_beta(alpha, 4000, generator=torch.Generator().manual_seed(0))
    assert again.dtype == torch.float32 and torch.equal(s.float(), again)


@pytest.mark.parametrize("kind", ["timm", "torchvision"])
def test_eval_mode_is_bitwise_inert(kind):
    model = _resnet18(kind)
    plain = copy.deepcopy(model)
    layer = 1 if kind == "timm" else "layer1"  # timm: feature_info index 1 is layer1
    ms = MixStyle(layer, p=1.0, seed=0).attach(model)
    dsu = DSU("layer2", p=1.0, seed=1).attach(model)
    assert ms.layer == "layer1"
    x = torch.randn(4, 3, 32, 32)
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    model.train(), plain.train()
    with torch.no_grad():
        assert not torch.allclose(model(x), plain(x))  # the hooks do fire in training
    assert ms.last_params["applied"] and dsu.last_params["applied"]


@pytest.mark.parametrize("cls", AUGMENTERS)
def test_attach_detach_round_trip(cls):
    model = _resnet18("timm")
    before = _snapshot(model)
    aug = cls("layer3", p=1.0).attach(model)
    assert aug.attached and isinstance(aug, FeatureAugmenter) and isinstance(aug, StatsAugmenter)
    assert _snapshot(model)[:2] == before[:2]  # no new parameters, buffers or modules while attached
    assert attached_augmenters(model) == [aug]
    assert "attached to ResNet.layer3" in repr(aug) and cls.__name__ in repr(aug)
    model.train()(torch.randn(2, 3, 32, 32))
    assert aug.detach() is model and not aug.attached
    assert _snapshot(model) == before and attached_augmenters(model) == []
    assert "detached" in repr(aug)
    aug.attach(model)  # can be attached again after detaching
    aug.detach()


@pytest.mark.parametrize("cls", AUGMENTERS)
def test_errors(cls):
    model = Tiny()
    with pytest.raises(ValueError, match="is not a module of Tiny.*layer1"):
        cls("layer9").attach(model)
    with pytest.raises(ValueError, match="probability in"):
        cls("layer1", p=1.5)
    with pytest.raises(ValueError, match="probability in"):
        cls("layer1", p=-0.1)
    with pytest.raises(ValueError, match="unknown"):
        cls("layer1", q=1)
    with pytest.raises(TypeError, match="Generator"):
        cls("layer1", generator=1)
    aug = cls("layer1")
    with pytest.raises(RuntimeError, match="not attached"):
        aug.detach()
    aug.attach(model)
    with pytest.raises(RuntimeError, match="already attached"):
        aug.attach(model)
    with pytest.raises(ValueError, match="keep='adv' does not apply"):
        aug.detach(keep="adv")
    aug.detach(keep="clean")
    bad = cls("fc", p=1.0).attach(model)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model.train()(torch.randn(2, 3, 8, 8))
    bad.detach()
    with pytest.raises(ValueError, match="alpha must be > 0"):
        MixStyle("layer1", alpha=0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        MixStyle("layer1", alpha=-1.0)


@pytest.mark.parametrize("cls", AUGMENTERS)
def test_switches_restore_state(cls):
    model = Tiny().train()
    plain = copy.deepcopy(model)
    aug = cls("layer1", p=1.0).attach(model)
    x = torch.randn(4, 3, 8, 8)
    with aug.disabled():
        assert torch.equal(model(x), plain(x))
    assert aug.active
    aug.set_active(False)
    assert torch.equal(model(x), plain(x)) and aug.last_params is None
    with pytest.raises(KeyError):
        with aug.enabled():
            assert aug.active
            raise KeyError("boom")
    assert not aug.active
    with aug.enabled():
        assert not torch.allclose(model(x), plain(x))
    assert not aug.active and aug.loss_term(torch.zeros(4)) is None


@pytest.mark.parametrize("cls", AUGMENTERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtype_and_channels_last(cls, dtype):
    x = torch.randn(4, 6, 5, 5).to(dtype=dtype, memory_format=torch.channels_last)
    aug = cls("layer1", p=1.0, seed=0)
    out = aug.augment(x)
    assert out.dtype == dtype and out.shape == x.shape and torch.isfinite(out).all()
    assert out.is_contiguous(memory_format=torch.channels_last)
    ref = cls("layer1", p=1.0, seed=0).augment(x.float().contiguous())  # the same draws on float32 NCHW
    assert torch.allclose(out.float(), ref, atol=0.05 if dtype != torch.float32 else 1e-5, rtol=0.05)


@pytest.mark.parametrize("cls", AUGMENTERS)
def test_generator_reproducible(cls):
    x = torch.randn(6, 4, 5, 5)
    a, b = cls("l", p=0.5, generator=torch.Generator().manual_seed(3)), cls("l", p=0.5, seed=3)
    outs_a, outs_b = [a.augment(x) for _ in range(6)], [b.augment(x) for _ in range(6)]
    assert all(torch.equal(u, v) for u, v in zip(outs_a, outs_b))
    assert any(o is x for o in outs_a) and any(o is not x for o in outs_a)  # p=0.5: some applied, some not


def test_deepcopy_and_model_ema():
    from timm.utils import ModelEmaV3

    model = Tiny()
    ms = MixStyle("layer1", p=1.0, seed=0).attach(model)
    dsu = DSU("layer2", p=1.0, seed=1).attach(model)
    state = ms.generator.get_state()
    ema = ModelEmaV3(model, decay=0.9)
    clone = copy.deepcopy(model)
    x = torch.randn(4, 3, 8, 8)
    clone.train()(x)
    assert ms.last_params is None and dsu.last_params is None, "the copy's hooks must not touch the originals"
    assert torch.equal(ms.generator.get_state(), state)
    copies = attached_augmenters(clone)
    assert len(copies) == 2 and not {id(ms), id(dsu)} & {id(c) for c in copies}
    assert all(c.model is clone and c.last_params["applied"] for c in copies)
    model.train()(x).sum().backward()
    ema.update(model)
    with torch.no_grad():
        assert torch.isfinite(ema.module.eval()(x)).all()
    for c in reversed(copies):
        assert c.detach() is clone
    assert dsu.detach() is model and ms.detach() is model
    assert attached_augmenters(clone) == [] and attached_augmenters(model) == []


def test_fx_trace_of_an_attached_model_has_no_augmentation():
    model = _resnet18("torchvision")
    plain = copy.deepcopy(model)
    MixStyle("layer1", p=1.0).attach(model)
    DSU("layer2", p=1.0).attach(model)
    model.train(), plain.train()
    traced = torch.fx.symbolic_trace(model)
    reference = torch.fx.symbolic_trace(plain)
    assert [(n.op, str(n.target)) for n in traced.graph.nodes] == [(n.op, str(n.target)) for n in reference.graph.nodes]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(traced(x), plain(x), atol=1e-6)


def test_two_augmenters_and_advbn_train_and_detach_in_reverse_order():
    model = _resnet18("torchvision")
    before = _snapshot(model)
    adv = AdvBN("layer1", steps=1).attach(model)  # its frozen prefix runs in eval mode: augment after its layer
    ms = MixStyle("layer2", p=1.0, seed=0).attach(model)
    dsu = DSU("layer3", p=1.0, seed=1).attach(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    model.train()
    loss = F.cross_entropy(model(x), y) + adv.adversarial_loss(y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and ms.last_params["applied"] and dsu.last_params["applied"]
    assert dsu.detach() is model and ms.detach() is model and adv.detach() is model
    assert _snapshot(model) == before


def test_policy_specs_round_trip_and_train(tmp_path):
    cfg = PolicyConfig(features=[{"type": "mixstyle", "layer": "layer1", "p": 1.0, "seed": 0,
                                  "mode": "random", "start_epoch": 1},
                                 {"type": "dsu", "layer": "layer2", "p": 1.0, "eps": 1e-6},
                                 {"type": "advbn", "layer": "stem", "steps": 1}])  # augment after AdvBN's layer
    path = tmp_path / "policy.yaml"
    cfg.to_yaml(path)
    assert PolicyConfig.from_yaml(path) == cfg and PolicyConfig.from_dict(cfg.to_dict()) == cfg
    policy = Policy(PolicyConfig.from_yaml(path))
    ms, dsu = policy.features[0][0], policy.features[1][0]
    assert isinstance(ms, MixStyle) and isinstance(dsu, DSU) and ms.config.p == 1.0
    model = Tiny()
    before = _snapshot(model)
    policy.attach(model)
    model.train()
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    loss, info = policy.step(model, x, y, epoch=0)
    loss.backward()
    assert info["features_active"] == [False, True, True] and "loss_adv" in info
    assert ms.last_params is None and dsu.last_params["applied"]  # MixStyle starts at epoch 1: not in this forward
    policy.step(model, x, y, epoch=1)[0].backward()
    assert ms.last_params["applied"]
    assert policy.detach() is model and _snapshot(model) == before
    with pytest.raises(ValueError, match="unknown MixStyleConfig keys"):
        Policy({"features": [{"type": "mixstyle", "layer": "layer1", "beta": 1}]})


@pytest.mark.parametrize("cls", [MixStyle, DSU])
def test_augmenter_at_a_frozen_layer_in_eval_mode_still_fires_while_the_model_trains(cls):
    """Regression: the hook used the layer's flag, so MixStyle/DSU at a frozen prefix kept in eval mode (the recipe's
    ``layer1``, AdvBN's prefix) were silently inert during training."""
    model = _resnet18("torchvision")
    aug = cls("layer1", p=1.0, seed=0).attach(model)
    model.train()
    model.layer1.eval()  # frozen BatchNorm statistics
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    assert aug.last_params is not None and aug.last_params["applied"]
    model.eval()
    aug.last_params = None
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    assert aug.last_params is None, "eval mode of the model must stay inert"


def test_mixstyle_at_advbn_layer_with_frozen_prefix_is_applied():
    model = _resnet18("torchvision")
    AdvBN("layer1", freeze_prefix=True).attach(model)
    ms = MixStyle("layer1", p=1.0, seed=0).attach(model)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))
    assert not model.layer1.training, "AdvBN keeps its prefix in eval mode"
    assert ms.last_params is not None and ms.last_params["applied"]


class SwinLike(nn.Module):
    """timm Swin's layout: the stages return channels-last ``(N, H, W, C)`` maps; ``feature_info`` gives widths."""

    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 8, 2, stride=2)
        self.layers = nn.Sequential(nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8)),
                                    nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 16)))
        self.head = nn.Linear(16, 4)
        self.feature_info = [{"module": "layers.0", "num_chs": 8, "reduction": 2},
                             {"module": "layers.1", "num_chs": 16, "reduction": 2}]

    def forward(self, x):
        return self.head(self.layers(self.patch_embed(x).permute(0, 2, 3, 1)).mean((1, 2)))


def _same_draws(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
                                        for k in a)


@pytest.mark.parametrize("cls", AUGMENTERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_output_is_the_permuted_nchw_feature(cls, dtype):
    """Regression (issue 22, 2): an (N, H, W, C) output took its statistics over (W, C) per "channel" H."""
    x = _feature_map(dtype)
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    aug, ref = cls("l", p=1.0, seed=0, layout="nhwc"), cls("l", p=1.0, seed=0)
    out, expected = aug.augment(nhwc), ref.augment(x)
    assert _same_draws(aug.last_params, ref.last_params)  # the same random numbers, read per channel C
    assert out.shape == nhwc.shape and out.dtype == dtype and out.stride() == nhwc.stride()
    assert torch.allclose(out.float(), expected.permute(0, 2, 3, 1).float(), atol=1e-5 if dtype == torch.float32
                          else 0.05, rtol=0.02)
    params = cls("l", p=1.0, seed=0, layout="nhwc").generate_parameters(nhwc.shape)  # the kornia-style split
    assert _same_draws(params, aug.last_params) and torch.equal(aug.apply(nhwc, params), out)


@pytest.mark.parametrize("cls", AUGMENTERS)
def test_token_output_takes_statistics_over_the_tokens(cls):
    x = _feature_map()  # (N, C, H, W) -> tokens (N, H * W, C)
    tokens = x.flatten(2).transpose(1, 2).contiguous()
    aug, ref = cls("l", p=1.0, seed=0), cls("l", p=1.0, seed=0)
    out, expected = aug.augment(tokens), ref.augment(x.flatten(2).unsqueeze(-1))  # (N, C, T, 1)
    assert _same_draws(aug.last_params, ref.last_params)
    assert out.shape == tokens.shape and out.is_contiguous()
    assert torch.allclose(out, expected.squeeze(-1).transpose(1, 2), atol=1e-5)


@pytest.mark.parametrize("cls", AUGMENTERS)
def test_default_layout_on_nchw_is_unchanged_bitwise(cls):
    """``layout='auto'`` and ``'nchw'`` on an (N, C, H, W) map: the same output and generator state, bit for bit."""
    x = _feature_map()
    a, b = cls("l", p=0.5, seed=4), cls("l", p=0.5, seed=4, layout="nchw")
    for _ in range(4):
        assert torch.equal(a.augment(x), b.augment(x))
    assert torch.equal(a.generator.get_state(), b.generator.get_state())


@pytest.mark.parametrize("cls", AUGMENTERS)
def test_swin_like_channels_last_stage(cls):
    model = SwinLike().train()
    before = _snapshot(model)
    x = torch.randn(4, 3, 8, 8)
    aug = cls(1, p=1.0, seed=0).attach(model)  # feature_info index 1: layers.1, output (N, 4, 4, 16)
    with pytest.raises(ValueError, match=rf"looks channels-last.*{cls.__name__}\('layers.1', layout='nhwc'\)"):
        model(x)
    aug.detach()
    assert _snapshot(model) == before
    aug = cls(1, p=1.0, seed=0, layout="nhwc").attach(model)
    seen = []
    model.layers[1].register_forward_hook(lambda m, i, o: seen.append(o))  # runs after the augmenter's hook
    model(x).sum().backward()
    with aug.disabled():
        raw = model.layers[1](model.layers[0](model.patch_embed(x).permute(0, 2, 3, 1)))
    ref = cls("l", p=1.0).apply(raw.permute(0, 3, 1, 2), aug.last_params).permute(0, 2, 3, 1)
    assert seen[0].shape == (4, 4, 4, 16) and torch.allclose(seen[0], ref, atol=1e-5)


@pytest.mark.parametrize("cls", AUGMENTERS)
def test_layout_errors(cls):
    with pytest.raises(ValueError, match="layout must be 'auto', 'nchw' or 'nhwc'"):
        cls("l", layout="channels_last")
    with pytest.raises(ValueError, match="layout='nhwc' needs a 4-D"):
        cls("l", p=1.0, layout="nhwc").augment(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=rf"looks channels-last.*{cls.__name__}\('l', layout='nhwc'\)"):
        cls("l", p=1.0).augment(torch.randn(2, 6, 6, 16))  # no model: the shape says (N, H, W, C)
    assert cls("l", p=1.0, layout="nchw").augment(torch.randn(2, 6, 6, 16)).shape == (2, 6, 6, 16)  # told so
    with pytest.raises(ValueError, match=r"\(N, T, C\)"):
        cls("l", p=1.0).augment(torch.randn(2, 3, 4, 4, 4))


def _feature_map(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(6, 5, 4, 7, generator=g) * (0.5 + 2 * torch.rand(6, 5, 1, 1, generator=g)) + 1).to(dtype)


def test_timm_swin_stage_is_refused_then_handled_with_layout_nhwc():
    """A real timm Swin (tiny, random weights): ``layers.1`` returns (N, H, W, C)."""
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=4, img_size=32,
                              window_size=2, embed_dim=16, depths=(1, 1), num_heads=(1, 1)).train()
    x = torch.randn(4, 3, 32, 32)
    policy = Policy({"features": [{"type": "mixstyle", "layer": 1, "p": 1.0, "seed": 0}]})
    policy.attach(model)
    with pytest.raises(ValueError, match=r"\(4, 4, 4, 32\).*feature_info says 32 channels.*layout='nhwc'"):
        model(x)
    policy.detach()
    policy = Policy({"features": [{"type": "mixstyle", "layer": 1, "p": 1.0, "seed": 0, "layout": "nhwc"},
                                  {"type": "dsu", "layer": "layers.0", "p": 1.0, "seed": 1, "layout": "nhwc"}]})
    policy.attach(model)
    loss, _ = policy.step(model, torch.rand(4, 3, 32, 32), torch.arange(4))
    loss.backward()
    assert torch.isfinite(loss) and all(f.last_params["applied"] for f, _ in policy.features)
    assert policy.features[0][0].last_params["lam"].shape == (4,)
    assert policy.features[1][0].last_params["noise_mu"].shape == (4, 16)  # per channel C, not per row H
    policy.detach()


def test_check_positive_names_the_option_and_refuses_bools():
    assert check_positive(3, "eps") == 3.0 and isinstance(check_positive(3, "eps"), float)
    for bad in (0, -1e-6, True, "1e-6", None, float("nan")):
        with pytest.raises(ValueError, match=r"^alpha must be > 0 \(concentration\), got "):
            check_positive(bad, "alpha", "concentration")
