"""Small models shared by the feature tests."""

from __future__ import annotations

import torch
import torchvision


def tv_resnet18() -> torchvision.models.ResNet:
    """torchvision's ResNet-18 with 10 classes, seeded (0); ``(N, 3, H, W) -> (N, 10)``."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)
