import pytest
import torch
import torch.nn.functional as F

from advbn_aug.losses import augmix_criterion, jsd_consistency


def test_jsd_zero_for_identical_positive_otherwise():
    z = torch.randn(4, 10)
    assert float(jsd_consistency([z, z.clone(), z.clone()])) == pytest.approx(0.0, abs=1e-6)
    assert float(jsd_consistency(torch.cat([z, z, z]), num_splits=3)) == pytest.approx(0.0, abs=1e-6)
    assert float(jsd_consistency([z, z + torch.randn(4, 10), z])) > 1e-3


def test_matches_timm_jsd_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(12, 5)
    y = torch.randint(0, 5, (4,))
    ours = F.cross_entropy(logits[:4], y) + 12 * jsd_consistency(logits, num_splits=3)
    assert torch.allclose(ours, augmix_criterion()(logits, y.repeat(3)), atol=1e-6)


def test_jsd_is_differentiable():
    z = torch.randn(6, 3, requires_grad=True)
    jsd_consistency(z, num_splits=3).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_jsd_errors():
    with pytest.raises(ValueError, match="num_splits"):
        jsd_consistency(torch.randn(6, 3))
    with pytest.raises(ValueError, match="cannot be split"):
        jsd_consistency(torch.randn(7, 3), num_splits=3)
    with pytest.raises(ValueError, match="at least 2"):
        jsd_consistency([torch.randn(2, 3)])
