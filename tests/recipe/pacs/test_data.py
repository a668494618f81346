"""advbn_aug.recipe.pacs.data: the random resized crop and flip of the PACS training batches."""

from __future__ import annotations

import torch


def test_random_resized_crop_flip():
    from advbn_aug.recipe.pacs.data import random_resized_crop_flip

    torch.manual_seed(0)
    x = torch.rand(8, 3, 12, 12)
    full = random_resized_crop_flip(x, (1.0, 1.0), (1.0, 1.0))  # the whole image, flipped or not
    for a, b in zip(full, x):
        assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, b.flip(-1), atol=1e-5)
    out = random_resized_crop_flip(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    torch.manual_seed(1)
    again = random_resized_crop_flip(x)
    torch.manual_seed(1)
    assert torch.equal(again, random_resized_crop_flip(x))  # drawn from the global RNG: seeded runs repeat
