"""Blur corruptions (advbn_aug.eval.corruptions.blur): fidelity to the published definitions."""

from __future__ import annotations

import numpy as np
import pytest

from advbn_aug.eval.corruptions import corrupt
from advbn_aug.eval.corruptions.blur import _shuffle_pixels, motion_blur_kernel

from ._toy import toy_images


def _high_freq(x: np.ndarray) -> float:
    xf = x.astype(np.float64)
    return float(np.abs(np.diff(xf, axis=1)).mean() + np.abs(np.diff(xf, axis=2)).mean())


@pytest.mark.parametrize("name", ["defocus_blur", "gaussian_blur", "zoom_blur", "motion_blur"])
def test_blur_removes_high_frequencies_with_severity(name):
    x = toy_images(4)
    hf = [_high_freq(x)] + [_high_freq(corrupt(x, name, s, seed=3)) for s in range(1, 6)]
    # motion blur severities 3 and 4 differ only in radius 6 vs 8 at sigma 2: equal after rounding
    assert all(a >= b for a, b in zip(hf, hf[1:])) and hf[0] > hf[1] > hf[5], hf


def test_glass_shuffle_equals_the_published_sequential_loop():
    x = toy_images(1, 12)
    ours = x.copy()
    _shuffle_pixels(ours, 2, 2, [np.random.default_rng(5)])
    offsets = np.random.default_rng(5).integers(-2, 2, size=(2, 8, 8, 2))
    ref = x[0].copy()
    for it in range(2):
        for a, h in enumerate(range(10, 2, -1)):
            for b, w in enumerate(range(10, 2, -1)):
                dx, dy = offsets[it, a, b]
                ref[h, w], ref[h + dy, w + dx] = ref[h + dy, w + dx], ref[h, w]  # numpy views: a copy
    np.testing.assert_array_equal(ours[0], ref)


def test_motion_kernel_is_a_normalised_one_sided_line():
    k = motion_blur_kernel(6, 2, 0.0)
    assert k.sum() == pytest.approx(1.0)
    centre = k.shape[0] // 2
    assert np.count_nonzero(k) == np.count_nonzero(k[centre, centre:])  # horizontal, towards +x only
    assert k[centre, centre] == k.max()
    kv = motion_blur_kernel(6, 2, 90.0)
    np.testing.assert_allclose(kv, k.T, atol=1e-7)
