"""Shared by the recipe tests: the toy-scale settings and the skip for checkouts without the shared data."""

from __future__ import annotations

import pytest

from advbn_aug.datasets.cifar10 import shared_data_dir

needs_data = pytest.mark.skipif(
    shared_data_dir() is None or not (shared_data_dir() / "cifar10" / "train_jpeg.npz").is_file(),
    reason="needs the shared CIFAR-10 data and weights (../shared/data or $ADVBN_DATA)")


def toy_config(**kw):
    """A recipe config small enough for a test: two steps on 40 images, 16 corrupted images, two corruptions, no extra
    evaluation modes (tests/recipe/cifar10/test_eval_modes.py turns them on)."""
    from advbn_aug.recipe.cifar10.config import RecipeConfig

    base = dict(arms=["pretrained", "standard", "advbn"], seeds=[0], steps=2, batch_size=8, train_subset=40,
                checkpoint_interval=1, eval_images=16, corruptions=["gaussian_noise", "contrast"], severities=[3],
                clean_test_images=32, lossless_images=16, eval_batch_size=32,
                advbn={"layer": "layer1", "eps": 1.1, "step_size": 0.2, "steps": 2}, extras=[])
    base.update(kw)
    return RecipeConfig(**base)
