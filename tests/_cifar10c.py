"""A fake CIFAR-10-C folder for CLI tests: one corruption's 5 severities of the same images, and the labels."""

from pathlib import Path

import numpy as np


def write_cifar10c(root: Path, images: np.ndarray, labels: np.ndarray, corruption: str = "fog") -> Path:
    """``images`` (n, 32, 32, 3) uint8 repeated for the 5 severities, as the real ``<corruption>.npy`` stacks them."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"{corruption}.npy", np.concatenate([images] * 5))
    np.save(root / "labels.npy", np.tile(labels, 5))
    return root
