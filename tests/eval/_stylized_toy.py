"""Tiny style pools and content images for the stylized-set tests."""

from __future__ import annotations

import numpy as np

COLOURS = np.array([[250, 10, 10], [10, 250, 10], [10, 10, 250]], dtype=np.uint8)


def toy_pool() -> list[np.ndarray]:
    """Three uniform paintings of different sizes (red, green, blue)."""
    return [np.full((h, w, 3), c, dtype=np.uint8) for c, (h, w) in zip(COLOURS, [(20, 30), (16, 16), (40, 24)])]


def toy_content(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform grey-ish non-square images (10 x 14) with labels 0..n-1."""
    levels = np.linspace(40, 200, n).astype(np.uint8)
    return np.stack([np.full((10, 14, 3), v, dtype=np.uint8) for v in levels]), np.arange(n)
