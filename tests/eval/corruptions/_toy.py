"""Images every corruption has something to change in."""

from __future__ import annotations

import numpy as np


def toy_images(n: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3): smooth colour gradients plus texture, so every corruption has something to change."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.2 * np.sin(6 * xx)], -1)
    imgs = base[None] + 0.12 * rng.standard_normal((n, size, size, 3))
    return (np.clip(imgs, 0, 1) * 255).astype(np.uint8)
