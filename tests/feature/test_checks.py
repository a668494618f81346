"""The input checks AdvBN runs: layout, targets, finiteness (each error names the problem and the fix)."""

import warnings

import pytest
import torch
from torch import nn

from advbn_aug.feature.checks import check_finite, check_layout, check_targets


class _WithInfo(nn.Module):
    feature_info = [{"module": "stage", "num_chs": 8}]


def test_check_layout_uses_feature_info_then_the_shape():
    check_layout(_WithInfo(), "stage", torch.zeros(2, 8, 5, 5), "auto")  # (N, C, H, W) with C=8
    with pytest.raises(ValueError, match="feature_info says 8 channels.*layout='nhwc'"):
        check_layout(_WithInfo(), "stage", torch.zeros(2, 5, 5, 8), "auto")
    with pytest.raises(ValueError, match="dims 1 and 2 are equal"):
        check_layout(nn.Module(), "stage", torch.zeros(2, 7, 7, 16), "auto")
    check_layout(nn.Module(), "stage", torch.zeros(2, 7, 7, 16), "nchw")  # the user says so
    with pytest.raises(ValueError, match="layout='nhwc' needs a 4-D"):
        check_layout(nn.Module(), "stage", torch.zeros(2, 7, 16), "nhwc")


def test_check_targets():
    f = torch.zeros(4, 3, 2, 2)
    check_targets(f, torch.zeros(4, dtype=torch.long), "ce")
    check_targets(f, None, "kl")
    with pytest.raises(ValueError, match="needs AdvBN\\(..., attack_loss='kl'\\)"):
        check_targets(f, None, "ce")
    with pytest.raises(ValueError, match="batch has 4 samples"):
        check_targets(f, torch.zeros(3, dtype=torch.long), "ce")
    with pytest.raises(TypeError, match="targets must be a tensor"):
        check_targets(f, [0, 1, 2, 3], "ce")


def test_check_finite():
    ok = torch.ones(2, 3)
    check_finite("l", ok, ok, torch.tensor(0))
    with pytest.raises(FloatingPointError, match="output of layer 'l' contains NaN"):
        check_finite("l", torch.tensor([1.0, float("nan")]), None, torch.tensor(0))
    with pytest.raises(FloatingPointError, match="perturbed feature at layer 'l'"):
        check_finite("l", ok, torch.tensor([float("inf")]), torch.tensor(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_finite("l", ok, ok, torch.tensor(3))
    assert any("3 non-finite attack gradient entries" in str(w.message) for w in caught)
