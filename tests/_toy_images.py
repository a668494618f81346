"""Smooth synthetic uint8 images shared by the DeepAugment tests (image and cli)."""

from __future__ import annotations

import numpy as np


def wave_images(n: int = 32, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3): a random mix of sines and ramps per image."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b, c = rng.rand(3)
        img = np.stack([np.sin(6 * a * xx + 3 * b), np.cos(5 * b * yy + c), (xx * a + yy * c) / 2], -1)
        out.append(((img + 1) / 2 * 255).clip(0, 255))
    return np.stack(out).astype(np.uint8)
