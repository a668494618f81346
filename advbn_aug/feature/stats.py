"""Per-channel feature statistics and the AdvBN perturbation (``docs/algorithm.md``). Pure functions.

Two feature layouts are supported:

* spatial maps ``(N, C, H, W)`` (any memory format): statistics over ``(N, H, W)``, multipliers ``(1, C, 1, 1)``;
* tokens ``(N, T, C)`` (timm ViT ``blocks.k``): statistics over ``(N, T)``, multipliers ``(1, 1, C)``.

Statistics are always computed in float32, whatever the feature's dtype (AMP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["FeatureStats", "feature_stats", "perturb_stats", "multiplier_shape", "feature_layout", "stats_view"]

STD_EPS = 1e-5


def feature_layout(f: torch.Tensor, *, name: str = "feature") -> str:
    """``"spatial"`` for ``(N, C, H, W)``, ``"tokens"`` for ``(N, T, C)``; anything else raises."""
    if f.dim() == 4:
        return "spatial"
    if f.dim() == 3:
        return "tokens"
    raise ValueError(
        f"{name} has shape {tuple(f.shape)}: AdvBN needs a (N, C, H, W) feature map or (N, T, C) tokens. "
        "Pick a layer whose output is one of those (e.g. a ResNet stage or a ViT block)."
    )


def stats_view(f: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``f`` as the statistics see it: with ``channels_last``, a ``(N, H, W, C)`` map becomes tokens
    ``(N, H * W, C)`` (a view); any other feature is returned as it is."""
    return f.flatten(1, 2) if channels_last and f.dim() == 4 else f


def _reduce_dims(f: torch.Tensor, per_instance: bool = False) -> tuple[int, ...]:
    dims = (0, 2, 3) if feature_layout(f) == "spatial" else (0, 1)
    return dims[1:] if per_instance else dims


def multiplier_shape(f: torch.Tensor) -> tuple[int, ...]:
    """Shape of the batch-shared multipliers for feature ``f``: ``(1, C, 1, 1)`` or ``(1, 1, C)``."""
    if feature_layout(f) == "spatial":
        return (1, f.shape[1], 1, 1)
    return (1, 1, f.shape[2])


@dataclass(frozen=True)
class FeatureStats:
    """Batch statistics of a feature, per channel, broadcastable against it (float32).

    ``mean`` and ``std`` have the multiplier shape; ``std = sqrt(unbiased var + 1e-5)`` as in the reference code.
    """

    mean: torch.Tensor
    std: torch.Tensor


def feature_stats(f: torch.Tensor, per_instance: bool = False) -> FeatureStats:
    """Per-channel batch mean and std of ``f`` (``(N, C, H, W)`` or ``(N, T, C)``), computed in float32.

    ``per_instance``: statistics of each sample over ``(H, W)`` / ``T`` instead, shaped ``(N, C, 1, 1)`` /
    ``(N, 1, C)`` (instance-level AdvBN).
    """
    dims = _reduce_dims(f, per_instance)
    f32 = f.float()
    count = 1
    for d in dims:
        count *= f32.shape[d]
    var, mean = torch.var_mean(f32, dim=dims, keepdim=True, correction=1 if count > 1 else 0)
    return FeatureStats(mean=mean, std=(var + STD_EPS).sqrt())


def perturb_stats(f: torch.Tensor, mean: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
                  clamp_min: float | None = 0.0) -> torch.Tensor:
    """``clamp_min((f - mean) * s + mean * m)`` in float32: channel mean -> ``m * mean``, std -> ``|s| * std``.

    ``clamp_min=None`` skips the clamp (features that are not post-ReLU). Returns float32 of ``f``'s shape.
    """
    out = (f.float() - mean) * s + mean * m
    if clamp_min is not None:
        out = out.clamp_min(clamp_min)
    return out
