"""DSU: agreement with the reference formula, sampled statistics, batch of one, probabilities, config."""

import pytest
import torch
from torch import nn

from advbn_aug.feature.dsu import DSU, DSUConfig


def _reference(x, e1, e2, eps=1e-6):
    """The reference DSU forward with fixed noise ``e1, e2`` ``(N, C)`` (its code, written out)."""
    n, c = x.shape[:2]
    mean = x.mean(dim=[2, 3])
    std = (x.var(dim=[2, 3]) + eps).sqrt()
    sqrtvar_mu = (mean.var(dim=0, keepdim=True) + eps).sqrt().repeat(n, 1)
    sqrtvar_std = (std.var(dim=0, keepdim=True) + eps).sqrt().repeat(n, 1)
    beta = mean + e1 * sqrtvar_mu
    gamma = std + e2 * sqrtvar_std
    x = (x - mean.reshape(n, c, 1, 1)) / std.reshape(n, c, 1, 1)
    return x * gamma.reshape(n, c, 1, 1) + beta.reshape(n, c, 1, 1)


def _feature(n=8, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = 0.5 + 2 * torch.rand(n, c, 1, 1, generator=g)  # well-conditioned: no near-constant channel
    return torch.randn(n, c, 6, 7, generator=g) * scale + torch.randn(n, c, 1, 1, generator=g)


def test_matches_the_reference_including_gradients():
    x = _feature().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    dsu = DSU("layer1", p=1.0, seed=0)
    params = dsu.generate_parameters(x.shape, x.device)
    assert params["applied"] and params["noise_mu"].shape == (8, 5) and params["noise_sig"].shape == (8, 5)
    out = dsu.apply(x, params)
    ref = _reference(x_ref, params["noise_mu"], params["noise_sig"])
    assert torch.allclose(out, ref, atol=1e-5)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (ref * w).sum().backward()  # the statistics are not detached: gradients flow through them as in the reference
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-4)


def test_output_statistics_are_the_sampled_ones():
    x = _feature()
    dsu = DSU("layer1", p=1.0, seed=1)
    params = dsu.generate_parameters(x.shape)
    beta, gamma = dsu.sample_stats(x, params)
    out = dsu.apply(x, params)
    var = x.var((2, 3), keepdim=True)
    assert torch.allclose(out.mean((2, 3), keepdim=True), beta, atol=1e-5)
    expected_std = gamma.abs() * (var / (var + 1e-6)).sqrt()
    assert torch.allclose(out.std((2, 3), keepdim=True), expected_std, rtol=1e-4, atol=1e-6)
    mu, sig = x.mean((2, 3), keepdim=True), (var + 1e-6).sqrt()
    assert not torch.allclose(beta, mu) and not torch.allclose(gamma, sig)  # the noise does move them
    spread = ((beta - mu) / (mu.var(0, keepdim=True) + 1e-6).sqrt()).flatten()
    assert torch.allclose(spread, params["noise_mu"].flatten(), atol=1e-4)


def test_batch_of_one_is_identity_without_nan():
    x = _feature(n=1)
    dsu = DSU("layer1", p=1.0, seed=0)
    out = dsu.augment(x)
    assert out is x and torch.isfinite(out).all() and dsu.last_params["applied"]
    beta, gamma = dsu.sample_stats(x, dsu.last_params)
    assert torch.isfinite(beta).all() and torch.isfinite(gamma).all()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    DSU("0", p=1.0).attach(model)
    y = model.train()(torch.randn(1, 3, 5, 5))
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(model[0].weight.grad).all()


def test_probability_zero_and_one_and_tiny_maps():
    x = _feature()
    never, always = DSU("l", p=0.0, seed=0), DSU("l", p=1.0, seed=0)
    for _ in range(20):
        assert never.augment(x) is x
        assert not torch.equal(always.augment(x), x)
    assert torch.isfinite(always.augment(torch.randn(4, 3, 1, 1))).all()
    assert torch.isfinite(always.augment(torch.zeros(4, 3, 2, 2))).all()  # constant maps: eps keeps it finite


def test_config_round_trip_and_errors():
    cfg = DSUConfig(layer=2, p=0.25, eps=1e-5, seed=3)
    assert DSUConfig.from_yaml(cfg.to_yaml()) == cfg and DSUConfig.from_dict(cfg.to_dict()) == cfg
    dsu = DSU.from_config(cfg.to_dict())
    assert dsu.config == cfg and "DSU(layer=2, p=0.25, eps=1e-05" in repr(dsu)
    assert DSUConfig() == DSUConfig(layer="layer1", p=0.5, eps=1e-6)
    for bad, match in [({"p": 1.01}, "probability"), ({"eps": -1.0}, "eps"), ({"p": "0.5"}, "probability"),
                       ({"eps": True}, "eps must be > 0, got True")]:
        with pytest.raises(ValueError, match=match):
            DSUConfig(**bad)
    with pytest.raises(ValueError, match="unknown DSUConfig keys"):
        DSUConfig.from_dict({"factor": 1.0})
    with pytest.raises(ValueError, match="noise_mu"):
        DSU("l", p=1.0).apply(_feature(n=4), DSU("l", p=1.0).generate_parameters((3, 5, 2, 2)))


def test_channels_last_output_statistics_are_the_sampled_ones():
    """Regression (issue 22, 2): with ``layout="nhwc"`` the sampled statistics are channel C's over (H, W)."""
    x = _feature()  # (8, 5, 6, 7)
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    dsu = DSU("layer1", p=1.0, seed=1, layout="nhwc")
    params = dsu.generate_parameters(nhwc.shape)
    assert params["noise_mu"].shape == (8, 5)
    beta, gamma = dsu.sample_stats(nhwc, params)
    ref_beta, ref_gamma = DSU("layer1").sample_stats(x, params)
    assert torch.allclose(beta, ref_beta, atol=1e-5) and torch.allclose(gamma, ref_gamma, atol=1e-5)
    out = dsu.apply(nhwc, params)
    assert torch.allclose(out.mean((1, 2)), beta.flatten(1), atol=1e-4)
    assert DSUConfig.from_dict(DSUConfig(layout="nhwc").to_dict()).layout == "nhwc"
    with pytest.raises(ValueError, match="layout must be"):
        DSUConfig(layout="hwc")
