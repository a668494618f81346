"""The recipe's data (advbn_aug.recipe.cifar10.data): the DeepAugment copies of the training subset are made once."""

from __future__ import annotations

import torch

from ..._recipe_toy import needs_data, toy_config


@needs_data
def test_deepaugment_data_is_made_once_and_cached(tmp_path, monkeypatch):
    import numpy as np

    import advbn_aug.image as image
    from advbn_aug.recipe.cifar10.data import RecipeData, deepaugment_data

    cfg = toy_config(deepaugment={"nets": ["cae", "edsr"], "epochs": 1, "channels": 4, "batch_size": 16, "lr": 1e-3,
                                  "strength": 1.0, "group_size": 4})
    data = RecipeData(cfg, None)
    x, y = deepaugment_data(cfg, data, tmp_path, torch.device("cpu"), progress=False)
    assert x.shape == (2 * 40, 32, 32, 3) and x.dtype == np.uint8
    assert np.array_equal(y, np.concatenate([data.train_y, data.train_y]))
    assert not np.array_equal(x[:40], data.train_x)  # perturbed copies, not the clean images
    folders = list(tmp_path.glob("deepaugment-*"))
    assert len(folders) == 1 and {p.name for p in folders[0].iterdir()} == {"cae.pt", "cae.npz", "edsr.pt",
                                                                          "edsr.npz"}

    def boom(*a, **k):
        raise AssertionError("DeepAugment data was regenerated")

    monkeypatch.setattr(image, "train_deepaugment_net", boom)
    x2, _ = deepaugment_data(cfg, data, tmp_path, torch.device("cpu"), progress=False)
    assert np.array_equal(x, x2)
