"""Input checks shared by every image stage (AugMix, DeepAugment, the kornia / albumentations adapters)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_image_batch"]


def check_image_batch(x: Any, who: str) -> None:
    """Raise a clear error unless ``x`` is a float ``(N, C, H, W)`` tensor with ``C`` in {1, 3}; ``who`` names the
    caller in the message."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} takes a torch.Tensor (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        hint = " (channels-last? use x.permute(0, 3, 1, 2))" if x.dim() == 4 and x.shape[-1] in (1, 3) else ""
        raise ValueError(f"{who} expects (N, C, H, W) with C in {{1, 3}}, got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{who} expects a float tensor in [0, 1], got {x.dtype}; convert uint8 images with "
                        "x.float() / 255")
