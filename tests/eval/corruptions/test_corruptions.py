"""The corruption registry and :func:`corrupt` (advbn_aug.eval.corruptions): contracts, severity behaviour,
determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from advbn_aug.eval.corruptions import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CIFAR10_PARAMS,
    EXTRA_CORRUPTIONS,
    IMAGENET_PARAMS,
    corrupt,
    resolve_corruptions,
)

from ._toy import toy_images

_RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur", "snow",
           "frost", "fog", "spatter", "elastic_transform"}


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_registry_has_the_published_names_and_order():
    assert BENCHMARK_CORRUPTIONS == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    for table in (CIFAR10_PARAMS, IMAGENET_PARAMS):
        assert set(table) == set(ALL_CORRUPTIONS) and all(len(v) == 5 for v in table.values())


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_shape_dtype_change_and_reproducibility(name):
    x = toy_images()
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
    x = toy_images(4)
    dev = [_mad(corrupt(x, name, s, seed=3), x) for s in range(1, 6)]
    assert all(a < b for a, b in zip(dev, dev[1:])), dev


def test_imagenet_table_at_224px():
    x = toy_images(1, 224)
    for name in ("gaussian_noise", "defocus_blur", "frost", "elastic_transform", "pixelate"):
        out = corrupt(x, name, 2, dataset="imagenet")
        assert out.shape == x.shape and not np.array_equal(out, x)
    # ImageNet noise is stronger than CIFAR noise at the same severity
    assert _mad(corrupt(x, "gaussian_noise", 2, dataset="imagenet"), x) > _mad(corrupt(x, "gaussian_noise", 2), x)


def test_resolve_groups_and_errors():
    assert resolve_corruptions("benchmark") == BENCHMARK_CORRUPTIONS
    assert resolve_corruptions("contrast, fog,contrast") == ("contrast", "fog")
    with pytest.raises(ValueError, match="unknown corruption 'fogg'.*gaussian_noise"):
        resolve_corruptions(["fogg"])


def test_bad_inputs_raise_clear_errors():
    x = toy_images(1, 16)
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
