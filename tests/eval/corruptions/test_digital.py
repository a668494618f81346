"""Digital corruptions (advbn_aug.eval.corruptions.digital)."""

from __future__ import annotations

import numpy as np

from advbn_aug.eval.corruptions import corrupt
from advbn_aug.eval.corruptions.digital import elastic_transform, jpeg_compression, pixelate

from ._toy import toy_images


def test_contrast_lowers_std_and_keeps_mean():
    x = toy_images(4)
    stds = [x.astype(float).std()] + [corrupt(x, "contrast", s).astype(float).std() for s in range(1, 6)]
    assert all(a > b for a, b in zip(stds, stds[1:])), stds
    assert abs(corrupt(x, "contrast", 5).mean() - x.mean()) < 1.0


def _rngs(n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(i) for i in range(n)]


def test_pixelate_makes_constant_blocks():
    x = toy_images(2)
    out = pixelate(x, 0.25, _rngs(2))
    assert out.shape == x.shape and out.dtype == np.uint8
    blocks = out.reshape(2, 8, 4, 8, 4, 3)
    assert (blocks == blocks[:, :, :1, :, :1]).all(), "4 x 4 blocks of one colour"
    np.testing.assert_allclose(blocks[:, :, 0, :, 0].astype(float), x.reshape(2, 8, 4, 8, 4, 3).mean((2, 4)), atol=1)


def test_jpeg_quality_orders_the_error():
    x = toy_images(2)
    err = [np.abs(jpeg_compression(x, q, _rngs(2)).astype(float) - x).mean() for q in (95, 50, 10)]
    assert 0 < err[0] < err[1] < err[2], err


def test_elastic_transform_without_displacement_is_the_identity():
    x = toy_images(2)
    np.testing.assert_allclose(elastic_transform(x, (0.0, 1.0, 0.0), _rngs(2)), x.astype(np.float32), atol=1e-3)
    moved = elastic_transform(x, (3.0, 1.0, 1.0), _rngs(2))
    assert np.abs(moved - x).mean() > 1.0
