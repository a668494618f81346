"""Weather corruptions (advbn_aug.eval.corruptions.weather) and their procedural textures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

from advbn_aug.eval.corruptions import CIFAR10_PARAMS, corrupt
from advbn_aug.eval.corruptions.weather import frost_textures, plasma_fractal

from ._toy import toy_images


def _hsv_roundtrip(x: np.ndarray, channel: int, fn) -> np.ndarray:
    hsv = rgb_to_hsv(x.astype(np.float64) / 255)
    hsv[..., channel] = fn(hsv[..., channel])
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


@pytest.mark.parametrize("severity", [1, 5])
def test_brightness_and_saturate_match_an_hsv_round_trip(severity):
    x = toy_images(2)
    x[0, :4, :4] = 0  # black pixels
    x[0, 4:8, :4] = 128  # grey pixels (hue 0 in HSV)
    c = CIFAR10_PARAMS["brightness"][severity - 1]
    ref = _hsv_roundtrip(x, 2, lambda v: np.clip(v + c, 0, 1))
    assert np.abs(corrupt(x, "brightness", severity).astype(float) - ref).max() < 1.0 + 1e-6  # truncation to uint8
    a, b = CIFAR10_PARAMS["saturate"][severity - 1]
    ref = _hsv_roundtrip(x, 1, lambda s: np.clip(s * a + b, 0, 1))
    assert np.abs(corrupt(x, "saturate", severity).astype(float) - ref).max() < 1.0 + 1e-6  # truncation to uint8


def test_procedural_helpers_are_deterministic():
    a = plasma_fractal(32, 2.0, np.random.default_rng(0))
    assert a.shape == (32, 32) and a.min() == 0 and a.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(a, plasma_fractal(32, 2.0, np.random.default_rng(0)))
    bank = frost_textures(64)
    assert len(bank) == 5 and bank[0].shape == (64, 64, 3)
    assert 40 < float(np.mean(bank)) < 200 and len({float(t.mean()) for t in bank}) == 5
