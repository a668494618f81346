"""Noise corruptions (advbn_aug.eval.corruptions.noise): the noise each one adds, drawn from the image's own
generator."""

from __future__ import annotations

import numpy as np
import pytest

from advbn_aug.eval.corruptions.noise import gaussian_noise, impulse_noise, shot_noise, speckle_noise


def _grey(n: int = 2, size: int = 64, value: int = 128) -> np.ndarray:
    """uint8 (n, size, size, 3), one grey level: noise is the only structure."""
    return np.full((n, size, size, 3), value, dtype=np.uint8)


def _rngs(n: int = 2, seed: int = 0) -> list[np.random.Generator]:
    return [np.random.default_rng((seed, i)) for i in range(n)]


def test_gaussian_noise_has_the_table_std_and_zero_mean():
    x = _grey()
    out = gaussian_noise(x, 0.1, _rngs())
    assert out.shape == x.shape and out.dtype == np.float32
    noise = (out - x) / 255
    assert abs(noise.mean()) < 0.01 and noise.std() == pytest.approx(0.1, rel=0.05)


def test_shot_noise_keeps_the_mean_with_poisson_variance():
    x = _grey()
    out = shot_noise(x, 100, _rngs()) / 255
    assert out.mean() == pytest.approx(128 / 255, abs=0.01)
    assert out.var() == pytest.approx(128 / 255 / 100, rel=0.1)  # Poisson(x c) / c: variance x / c


def test_impulse_noise_is_salt_and_pepper_at_rate_c():
    x = _grey()
    out = impulse_noise(x, 0.2, _rngs())
    changed = out != x
    assert set(np.unique(out[changed]).tolist()) == {0.0, 255.0}
    assert changed.mean() == pytest.approx(0.2, abs=0.02)
    assert (out == 255).mean() == pytest.approx((out == 0).mean(), abs=0.02)


def test_speckle_noise_is_multiplicative():
    x = _grey()
    x[0] = 0
    out = speckle_noise(x, 0.2, _rngs())
    assert np.array_equal(out[0], x[0].astype(np.float32)), "black stays black"
    assert (out[1] / 255 - 128 / 255).std() == pytest.approx(0.2 * 128 / 255, rel=0.05)


def test_each_image_draws_from_its_own_generator():
    x = _grey()
    rngs = _rngs()
    out = gaussian_noise(x, 0.1, rngs)
    swapped = gaussian_noise(x, 0.1, _rngs()[::-1])
    np.testing.assert_array_equal(out[::-1], swapped)
    assert not np.array_equal(out[0], out[1])
