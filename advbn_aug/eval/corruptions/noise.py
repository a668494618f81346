"""Noise corruptions: gaussian, shot (Poisson), impulse (salt & pepper) and speckle noise.

Every function maps a uint8 batch ``(N, H, W, 3)`` plus one severity parameter and one random generator per
image to a float32 batch ``(N, H, W, 3)`` on the 0..255 scale (clipping and the cast to uint8 happen in
:func:`advbn_aug.eval.corruptions.corrupt`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


def _normal(rngs: Sequence[np.random.Generator], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack([r.standard_normal(shape, dtype=np.float32) for r in rngs])


def gaussian_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Additive N(0, c) noise on [0, 1] pixels."""
    xf = x.astype(np.float32) / 255.0
    return np.clip(xf + c * _normal(rngs, x.shape[1:]), 0, 1) * 255


def shot_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Poisson noise: ``Poisson(x * c) / c`` on [0, 1] pixels (``c`` photons at full scale)."""
    xf = x.astype(np.float64) / 255.0
    out = np.stack([r.poisson(xi * c) for r, xi in zip(rngs, xf)]).astype(np.float32) / c
    return np.clip(out, 0, 1) * 255


def impulse_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Salt and pepper: each channel value turns 0 or 1 (equal odds) with probability ``c``."""
    xf = x.astype(np.float32) / 255.0
    u = np.stack([r.random(x.shape[1:], dtype=np.float32) for r in rngs])
    xf[u < c / 2] = 1.0
    xf[(u >= c / 2) & (u < c)] = 0.0
    return xf * 255


def speckle_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Multiplicative noise ``x + x * N(0, c)`` on [0, 1] pixels."""
    xf = x.astype(np.float32) / 255.0
    return np.clip(xf + xf * c * _normal(rngs, x.shape[1:]), 0, 1) * 255
