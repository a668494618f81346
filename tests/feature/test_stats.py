import pytest
import torch

from advbn_aug.feature.stats import feature_layout, feature_stats, multiplier_shape, perturb_stats


def test_spatial_stats_match_definition():
    f = torch.randn(4, 3, 5, 6) * 2 + 1
    st = feature_stats(f)
    assert st.mean.shape == (1, 3, 1, 1) == multiplier_shape(f)
    ref_mean = f.permute(1, 0, 2, 3).reshape(3, -1).mean(1)
    ref_std = (f.permute(1, 0, 2, 3).reshape(3, -1).var(1, unbiased=True) + 1e-5).sqrt()
    torch.testing.assert_close(st.mean.flatten(), ref_mean)
    torch.testing.assert_close(st.std.flatten(), ref_std)


def test_token_stats_over_batch_and_tokens():
    f = torch.randn(2, 7, 5)
    st = feature_stats(f)
    assert st.mean.shape == (1, 1, 5) == multiplier_shape(f)
    torch.testing.assert_close(st.mean.flatten(), f.reshape(-1, 5).mean(0))


def test_half_precision_features_give_float32_stats():
    f = torch.randn(2, 3, 4, 4).to(torch.bfloat16)
    assert feature_stats(f).mean.dtype == torch.float32


def test_perturbation_moves_mean_and_std_as_specified():
    f = torch.randn(8, 4, 6, 6) + 3
    st = feature_stats(f)
    m = torch.tensor([0.5, 1.0, 1.5, 2.0]).view(1, 4, 1, 1)
    s = torch.tensor([2.0, 0.5, -1.0, 1.0]).view(1, 4, 1, 1)
    out = perturb_stats(f, st.mean, m, s, clamp_min=None)
    new = feature_stats(out)
    torch.testing.assert_close(new.mean, m * st.mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(new.std, (s.abs() * st.std).clamp_min(0), rtol=1e-3, atol=1e-3)
    assert (perturb_stats(f, st.mean, m, s, clamp_min=0.0) >= 0).all()
    # identity multipliers leave the feature unchanged
    torch.testing.assert_close(perturb_stats(f, st.mean, torch.ones_like(m), torch.ones_like(s), None), f)


@pytest.mark.parametrize("shape", [(3,), (2, 3), (1, 2, 3, 4, 5)])
def test_unsupported_rank(shape):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) feature map or \(N, T, C\) tokens"):
        feature_layout(torch.zeros(shape))
