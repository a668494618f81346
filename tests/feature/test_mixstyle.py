"""MixStyle: agreement with a hand-written formula, probabilities, cross-domain partners, config."""

import warnings

import pytest
import torch
from torch import nn

from advbn_aug.feature.mixstyle import MixStyle, MixStyleConfig


def _reference(x, lam, perm, eps=1e-6):
    """The paper's MixStyle for fixed ``lam`` ``(N,)`` and ``perm`` ``(N,)`` (its code, written out)."""
    mu = x.mean(dim=[2, 3], keepdim=True)
    var = x.var(dim=[2, 3], keepdim=True)
    sig = (var + eps).sqrt()
    mu, sig = mu.detach(), sig.detach()
    x_normed = (x - mu) / sig
    lmda = lam.view(-1, 1, 1, 1)
    mu_mix = mu * lmda + mu[perm] * (1 - lmda)
    sig_mix = sig * lmda + sig[perm] * (1 - lmda)
    return x_normed * sig_mix + mu_mix, mu_mix, sig_mix


def _feature(n=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, 7, 6, generator=g) * (0.5 + 3 * torch.rand(n, c, 1, 1, generator=g)) + 2


def test_matches_the_formula_and_mixes_the_statistics():
    x = _feature().requires_grad_()
    ms = MixStyle("layer1", p=1.0, alpha=0.1, seed=0)
    params = ms.generate_parameters(x.shape, x.device)
    assert params["applied"] and params["lam"].shape == (6,) and params["perm"].dtype == torch.int64
    assert sorted(params["perm"].tolist()) == list(range(6))  # random mode: a permutation
    out = ms.apply(x, params)
    ref, mu_mix, sig_mix = _reference(x, params["lam"], params["perm"])
    assert torch.allclose(out, ref, atol=1e-5)
    mean, std = out.mean((2, 3), keepdim=True), out.std((2, 3), keepdim=True)
    assert torch.allclose(mean, mu_mix, atol=1e-5) and torch.allclose(std, sig_mix, rtol=1e-4)
    out.sum().backward()  # statistics detached: d out / d x = sig_mix / sig
    sig = (x.detach().var((2, 3), keepdim=True) + 1e-6).sqrt()
    assert torch.allclose(x.grad, (sig_mix / sig).expand_as(x), rtol=1e-5)


def test_hook_applies_the_recorded_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Identity(), nn.Conv2d(4, 2, 1))
    ms = MixStyle("0", p=1.0, seed=1).attach(model)
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o))  # runs after MixStyle's hook
    x = torch.randn(5, 3, 6, 6)
    model.train()(x)
    params = ms.last_params
    with ms.disabled():
        raw = model[0](x)  # the layer's own output
    assert torch.allclose(seen[0], _reference(raw, params["lam"], params["perm"])[0], atol=1e-5)
    ms.detach()


def test_probability_zero_and_one():
    x = _feature()
    never, always = MixStyle("l", p=0.0, seed=0), MixStyle("l", p=1.0, seed=0)
    for _ in range(20):
        assert never.augment(x) is x and never.last_params == {"applied": False}
        out = always.augment(x)
        assert always.last_params["applied"] and not torch.equal(out, x)
    half = MixStyle("l", p=0.5, seed=0)
    applied = sum(half.generate_parameters(x.shape)["applied"] for _ in range(400))
    assert 150 < applied < 250


def test_small_alpha_and_tiny_maps_are_finite():
    ms = MixStyle("l", p=1.0, alpha=0.01, seed=0)
    for shape in [(8, 3, 4, 4), (4, 3, 1, 1), (1, 3, 2, 2)]:
        x = torch.randn(shape)
        assert torch.isfinite(ms.augment(x)).all()


@pytest.mark.parametrize("domains", [[0, 0, 0, 0, 1, 1, 2], [3, 3, 3, 3, 3, 1, 1, 1, 7], [0, 1, 0]])
def test_crossdomain_partners_come_from_other_domains(domains):
    n = len(domains)
    x = _feature(n=n)
    ms = MixStyle("l", p=1.0, mode="crossdomain", seed=0)
    ms.set_domains(torch.tensor(domains))
    d = torch.tensor(domains)
    hits = torch.zeros(n, n)
    for _ in range(50):
        perm = ms.generate_parameters(x.shape)["perm"]
        assert (d[perm] != d).all()
        hits[torch.arange(n), perm] += 1
    assert ((hits > 0) == (d[:, None] != d[None, :])).all()  # every other-domain sample gets drawn
    params = ms.generate_parameters(x.shape)
    assert torch.allclose(ms.apply(x, params), _reference(x, params["lam"], params["perm"])[0], atol=1e-5)


def test_crossdomain_labels_and_fallback():
    x = _feature(n=4)
    ms = MixStyle("l", p=1.0, mode="crossdomain", seed=0)
    with pytest.raises(RuntimeError, match="set_domains"):
        ms.augment(x)
    with ms.domains([0, 1, 0, 1]):
        perm = ms.generate_parameters(x.shape)["perm"]
        assert (perm % 2 != torch.arange(4) % 2).all()
        with pytest.raises(ValueError, match="4 domain labels but the batch has 3"):
            ms.augment(x[:3])
    with pytest.raises(RuntimeError, match="set_domains"):  # the context manager restored "no labels"
        ms.augment(x)
    ms.set_domains([2, 2, 2, 2])
    with pytest.warns(UserWarning, match="single domain"):
        ms.augment(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(ms.generate_parameters(x.shape)["perm"].tolist()) == [0, 1, 2, 3]  # warned once
    with pytest.raises(ValueError, match="1-D integer"):
        ms.set_domains(torch.rand(4))
    ms.set_domains(None)
    random = MixStyle("l", p=1.0, mode="random")
    random.set_domains([0, 0, 0])  # ignored by the random mode
    assert random.augment(x).shape == x.shape


def test_config_round_trip_and_errors(tmp_path):
    cfg = MixStyleConfig(layer="layer2", p=0.3, alpha=0.2, mode="crossdomain", seed=4)
    assert MixStyleConfig.from_yaml(cfg.to_yaml()) == cfg and MixStyleConfig.from_dict(cfg.to_dict()) == cfg
    ms = MixStyle.from_config(cfg.to_dict())
    assert ms.config == cfg and "alpha=0.2" in repr(ms) and "crossdomain" in repr(ms)
    assert MixStyle.from_config(cfg).config == cfg
    assert MixStyleConfig() == MixStyleConfig(layer="layer1", p=0.5, alpha=0.1, eps=1e-6, mode="random")
    for bad, match in [({"mode": "halves"}, "mode"), ({"alpha": 0}, "alpha"), ({"p": 2}, "probability"),
                       ({"eps": 0}, "eps"), ({"p": True}, "probability"),
                       # before: eps=True passed (a bool is an int) and became 1.0, unlike DSU's check
                       ({"eps": True}, "eps must be > 0, got True"), ({"alpha": "0.1"}, "alpha must be > 0")]:
        with pytest.raises(ValueError, match=match):
            MixStyleConfig(**bad)
    with pytest.raises(ValueError, match="unknown MixStyleConfig keys"):
        MixStyleConfig.from_dict({"lam": 1})
    with pytest.raises(ValueError, match="parameters are for 6 samples"):
        MixStyle("l", p=1.0).apply(_feature(n=4), MixStyle("l", p=1.0).generate_parameters((6, 5, 7, 6)))


def test_channels_last_and_tokens_mix_the_per_channel_statistics():
    """Regression (issue 22, 2): an (N, H, W, C) or (N, T, C) output must mix channel C's statistics over the
    positions, as the paper does for (N, C, H, W)."""
    x = _feature()  # (6, 5, 7, 6)
    for layout, feat, dims in [("nhwc", x.permute(0, 2, 3, 1).contiguous(), (1, 2)),
                               ("auto", x.flatten(2).transpose(1, 2).contiguous(), (1,))]:
        ms = MixStyle("l", p=1.0, seed=0, layout=layout)
        params = ms.generate_parameters(feat.shape)
        out = ms.apply(feat, params)
        _, mu_mix, sig_mix = _reference(x, params["lam"], params["perm"])
        assert torch.allclose(out.mean(dims), mu_mix.flatten(1), atol=1e-4)
        assert torch.allclose(out.std(dims), sig_mix.flatten(1), rtol=1e-4)
    cfg = MixStyleConfig(layout="nhwc")
    assert MixStyleConfig.from_yaml(cfg.to_yaml()) == cfg and MixStyle.from_config(cfg).config.layout == "nhwc"
    with pytest.raises(ValueError, match="layout must be"):
        MixStyleConfig(layout="NHWC")
