"""Shared by the integration tests: a tiny ImageFolder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """``root/{train,validation}/{a,b}/*.png``: 4 train and 2 validation images per class, 40x40 RGB."""
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("validation", 2)):
        for c, shade in (("a", 60), ("b", 190)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(shade, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i}.png")
    return root
