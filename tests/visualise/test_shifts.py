"""visualise.shifts: the AdvBN shift stays in its box and raises the loss; AdaIN takes the style's statistics."""

from __future__ import annotations

import pytest
import torch

from advbn_aug.feature.stats import feature_stats
from advbn_aug.visualise.shifts import SuffixModel, adain, advbn_shift
from advbn_aug.visualise.source import to_tensor

from .._visualise_tiny import one_thread, smooth_images, tiny_inverter  # noqa: F401 (one_thread: autouse)


def test_advbn_rows_move_the_statistics_within_the_box(tmp_path):
    images = smooth_images(4, seed=6)
    inv = tiny_inverter(images)
    x, y = to_tensor(images), torch.tensor([0, 1, 2, 0])
    f = inv.encode(x)
    suffix = SuffixModel(inv.encoder)
    shift = advbn_shift(suffix, f, x, y, eps=0.5, steps=3, step_size=0.2)
    suffix.close()
    assert float(shift.m.min()) >= 0.5 - 1e-6 and float(shift.m.max()) <= 1.5 + 1e-6
    assert not torch.equal(shift.features, f)
    assert float(shift.features.min()) >= 0  # post-ReLU layer: clamped at 0
    loss = torch.nn.functional.cross_entropy
    assert loss(shift.adv_logits, y) > loss(shift.clean_logits, y)  # the attack raised the loss
    none = advbn_shift(SuffixModel(inv.encoder), f, x, y, eps=0.5, steps=0)
    assert torch.allclose(none.features, f, atol=1e-5)


def test_adain_takes_the_style_statistics():
    content, style = torch.rand(3, 4, 8, 8) * 2, torch.rand(1, 4, 8, 8) * 5 + 1
    out = adain(content, style)
    mu, sig = feature_stats(out, per_instance=True).mean, feature_stats(out, per_instance=True).std
    smu, ssig = feature_stats(style, per_instance=True).mean, feature_stats(style, per_instance=True).std
    assert torch.allclose(mu, smu.expand_as(mu), atol=1e-3) and torch.allclose(sig, ssig.expand_as(sig), atol=1e-2)
    with pytest.raises(ValueError, match="same layer"):
        adain(content, torch.rand(1, 5, 8, 8))
