"""The CIFAR-10 recipe's model: the pretrained CIFAR ResNet with the keys its export keeps, its frozen prefix, and the
training-time random crop + flip."""

from __future__ import annotations

import torch
from torch import nn

from advbn_aug.recipe.cifar10.config import RecipeConfig, prefix_names

__all__ = ["load_cifar_model", "cifar_prefix_modules", "random_crop_flip", "augment"]


def load_cifar_model(cfg: RecipeConfig) -> tuple[nn.Module, list[str]]:
    """The pretrained ``cfg.model`` (``resnet20`` / ``resnet56``) and the keys of its weights file, in file order."""
    from advbn_aug.models.cifar_resnet import load_pretrained_cifar_resnet, pretrained_keys

    depth = int(cfg.model.removeprefix("resnet"))
    model = load_pretrained_cifar_resnet(depth)
    return model, pretrained_keys(depth)


def cifar_prefix_modules(model: nn.Module, cfg: RecipeConfig) -> list[nn.Module]:
    """The top-level modules every arm freezes: the stem and the stages up to the AdvBN layer."""
    return [getattr(model, name) for name in prefix_names(cfg.advbn.get("layer", "layer1"))]


def random_crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Per-image random crop (zero padding ``pad``) and horizontal flip, as in the pretrained model's training."""
    n, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    ox = torch.randint(0, 2 * pad + 1, (n,))
    oy = torch.randint(0, 2 * pad + 1, (n,))
    rows = (oy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (ox.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
    idx = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    ch = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    out = xp[idx, ch, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    flip = (torch.rand(n) < 0.5).to(x.device).view(n, 1, 1, 1)
    return torch.where(flip, out.flip(-1), out)


def augment(x: torch.Tensor, cfg: RecipeConfig) -> torch.Tensor:
    """The training-time augmentation of a float NCHW batch in [0, 1]: :func:`random_crop_flip` (looked up when
    called, so a test can replace it)."""
    return random_crop_flip(x)
