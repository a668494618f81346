"""A textured test image and its float batch, shared by the AugMix tests."""

from __future__ import annotations

import numpy as np
import torch


def toy_image(seed: int = 0, size: int = 32) -> np.ndarray:
    """uint8 (size, size, 3): ramps plus random texture."""
    yy, xx = np.mgrid[0:size, 0:size]
    rng = np.random.RandomState(seed)
    base = np.stack([xx * 7, yy * 5, (xx + yy) * 3], -1) + rng.randint(0, 40, (size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def as_batch(img) -> torch.Tensor:
    """A uint8 (H, W, 3) image (array or PIL) as a float (1, 3, H, W) batch in [0, 1]."""
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
