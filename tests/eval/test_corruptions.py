"""Common corruptions: contracts, severity behaviour, determinism, fidelity to the published definitions."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

from advbn_aug.eval.corruptions import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CIFAR10_PARAMS,
    EXTRA_CORRUPTIONS,
    IMAGENET_PARAMS,
    corrupt,
    corruption_params,
    resolve_corruptions,
)
from advbn_aug.eval.corruptions.blur import _shuffle_pixels, motion_blur_kernel
from advbn_aug.eval.corruptions.weather import frost_textures, plasma_fractal

_RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur", "snow",
           "frost", "fog", "spatter", "elastic_transform"}


def _images(n: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus texture: every corruption has something to change."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.2 * np.sin(6 * xx)], -1)
    imgs = base[None] + 0.12 * rng.standard_normal((n, size, size, 3))
    return (np.clip(imgs, 0, 1) * 255).astype(np.uint8)


def _high_freq(x: np.ndarray) -> float:
    xf = x.astype(np.float64)
    return float(np.abs(np.diff(xf, axis=1)).mean() + np.abs(np.diff(xf, axis=2)).mean())


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_registry_has_the_published_names_and_order():
    assert BENCHMARK_CORRUPTIONS == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    for table in (CIFAR10_PARAMS, IMAGENET_PARAMS):
        assert set(table) == set(ALL_CORRUPTIONS) and all(len(v) == 5 for v in table.values())


def test_parameter_tables_spot_values():
    assert CIFAR10_PARAMS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert IMAGENET_PARAMS["gaussian_noise"] == (0.08, 0.12, 0.18, 0.26, 0.38)
    assert corruption_params("jpeg_compression", 5, "cifar10") == 40
    assert corruption_params("jpeg_compression", 1, "imagenet") == 25
    assert corruption_params("motion_blur", 5, "imagenet") == (20, 15)
    # elastic: fractions of 32 (CIFAR) and of 244 at 224 px (ImageNet), scaled with the image side
    assert corruption_params("elastic_transform", 2, "cifar10") == pytest.approx((1.6, 6.4, 2.24))
    assert corruption_params("elastic_transform", 3, "imagenet") == pytest.approx((244 * 0.05, 2.44, 4.88))
    assert corruption_params("elastic_transform", 3, "imagenet", (112, 112)) == pytest.approx((6.1, 1.22, 2.44))


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_shape_dtype_change_and_reproducibility(name):
    x = _images()
    out = corrupt(x, name, 3, seed=1)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert not np.array_equal(out, x)
    np.testing.assert_array_equal(out, corrupt(x, name, 3, seed=1))
    single = corrupt(x[1], name, 3, seed=1, start_index=1)
    assert single.shape == x[1].shape and single.dtype == np.uint8
    np.testing.assert_array_equal(single, out[1])  # per-image streams: batch-independent
    if name in _RANDOM:
        assert not np.array_equal(out, corrupt(x, name, 3, seed=2))


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "pixelate",
                                  "jpeg_compression", "brightness", "fog", "zoom_blur"])
def test_deviation_from_clean_grows_with_severity(name):
    x = _images(4)
    dev = [_mad(corrupt(x, name, s, seed=3), x) for s in range(1, 6)]
    assert all(a < b for a, b in zip(dev, dev[1:])), dev


@pytest.mark.parametrize("name", ["defocus_blur", "gaussian_blur", "zoom_blur", "motion_blur"])
def test_blur_removes_high_frequencies_with_severity(name):
    x = _images(4)
    hf = [_high_freq(x)] + [_high_freq(corrupt(x, name, s, seed=3)) for s in range(1, 6)]
    # motion blur severities 3 and 4 differ only in radius 6 vs 8 at sigma 2: equal after rounding
    assert all(a >= b for a, b in zip(hf, hf[1:])) and hf[0] > hf[1] > hf[5], hf


def test_contrast_lowers_std_and_keeps_mean():
    x = _images(4)
    stds = [x.astype(float).std()] + [corrupt(x, "contrast", s).astype(float).std() for s in range(1, 6)]
    assert all(a > b for a, b in zip(stds, stds[1:])), stds
    assert abs(corrupt(x, "contrast", 5).mean() - x.mean()) < 1.0


def test_imagenet_table_at_224px():
    x = _images(1, 224)
    for name in ("gaussian_noise", "defocus_blur", "frost", "elastic_transform", "pixelate"):
        out = corrupt(x, name, 2, dataset="imagenet")
        assert out.shape == x.shape and not np.array_equal(out, x)
    # ImageNet noise is stronger than CIFAR noise at the same severity
    assert _mad(corrupt(x, "gaussian_noise", 2, dataset="imagenet"), x) > _mad(corrupt(x, "gaussian_noise", 2), x)


def _hsv_roundtrip(x: np.ndarray, channel: int, fn) -> np.ndarray:
    hsv = rgb_to_hsv(x.astype(np.float64) / 255)
    hsv[..., channel] = fn(hsv[..., channel])
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


@pytest.mark.parametrize("severity", [1, 5])
def test_brightness_and_saturate_match_an_hsv_round_trip(severity):
    x = _images(2)
    x[0, :4, :4] = 0  # black pixels
    x[0, 4:8, :4] = 128  # grey pixels (hue 0 in HSV)
    c = CIFAR10_PARAMS["brightness"][severity - 1]
    ref = _hsv_roundtrip(x, 2, lambda v: np.clip(v + c, 0, 1))
    assert np.abs(corrupt(x, "brightness", severity).astype(float) - ref).max() < 1.0 + 1e-6  # truncation to uint8
    a, b = CIFAR10_PARAMS["saturate"][severity - 1]
    ref = _hsv_roundtrip(x, 1, lambda s: np.clip(s * a + b, 0, 1))
    assert np.abs(corrupt(x, "saturate", severity).astype(float) - ref).max() < 1.0 + 1e-6  # truncation to uint8


def test_glass_shuffle_equals_the_published_sequential_loop():
    x = _images(1, 12)
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


def test_procedural_helpers_are_deterministic():
    a = plasma_fractal(32, 2.0, np.random.default_rng(0))
    assert a.shape == (32, 32) and a.min() == 0 and a.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(a, plasma_fractal(32, 2.0, np.random.default_rng(0)))
    bank = frost_textures(64)
    assert len(bank) == 5 and bank[0].shape == (64, 64, 3)
    assert 40 < float(np.mean(bank)) < 200 and len({float(t.mean()) for t in bank}) == 5


def test_resolve_groups_and_errors():
    assert resolve_corruptions("benchmark") == BENCHMARK_CORRUPTIONS
    assert resolve_corruptions("contrast, fog,contrast") == ("contrast", "fog")
    with pytest.raises(ValueError, match="unknown corruption 'fogg'.*gaussian_noise"):
        resolve_corruptions(["fogg"])


def test_bad_inputs_raise_clear_errors():
    x = _images(1, 16)
    with pytest.raises(ValueError, match="unknown corruption 'blurr'.*choose from"):
        corrupt(x, "blurr", 1)
    for bad in (0, 6, 2.5):
        with pytest.raises(ValueError, match="severity must be an integer in 1..5"):
            corrupt(x, "contrast", bad)
    with pytest.raises(TypeError, match="must be uint8"):
        corrupt(x.astype(np.float32), "contrast", 1)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        corrupt(x.transpose(0, 3, 1, 2), "contrast", 1)
    with pytest.raises(ValueError, match="parameter table"):
        corrupt(x, "contrast", 1, dataset="svhn")
