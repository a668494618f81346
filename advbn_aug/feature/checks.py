"""The checks AdvBN runs on what it is given: the layer output's layout, the targets, finiteness.

Each raises an error that names the problem and the fix; none changes state. Used by :class:`~advbn_aug.AdvBN`.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from advbn_aug.feature.config import AttackLoss, Layout

__all__ = ["check_layout", "check_targets", "check_finite"]


def _feature_info_channels(model: nn.Module | None, layer: str) -> int | None:
    """The channel count timm's ``feature_info`` declares for ``layer`` (``None`` when the model has none)."""
    info = getattr(model, "feature_info", None)
    try:
        for d in info or ():
            if isinstance(d, dict) and d.get("module") == layer and isinstance(d.get("num_chs"), int):
                return d["num_chs"]
    except TypeError:
        return None
    return None


def check_layout(model: nn.Module | None, layer: str, f: torch.Tensor, layout: Layout, *, who: str = "AdvBN") -> None:
    """Refuse 4-D outputs that look channels-last unless ``layout`` says so (statistics would mix up axes).

    Channels-last is recognised by timm's ``feature_info`` channel count when the model has one, else by
    ``(N, a, a, c)`` with ``c != a`` (square maps whose last axis differs). ``who`` names the augmenter in the error
    (``MixStyle``, ``DSU``: they resolve the layout the same way).
    """
    if layout == "nhwc" and f.dim() != 4:
        raise ValueError(f"layout='nhwc' needs a 4-D (N, H, W, C) output, but layer {layer!r} returned shape "
                         f"{tuple(f.shape)}: use layout='auto'")
    if layout == "auto" and f.dim() == 4:
        chs = _feature_info_channels(model, layer)
        _, a, b, c = f.shape
        looks_nhwc = (a != chs and c == chs) if chs else (a == b != c)
        if looks_nhwc:
            why = f"feature_info says {chs} channels" if chs else "dims 1 and 2 are equal and dim 3 differs"
            raise ValueError(f"the output of layer {layer!r} has shape {tuple(f.shape)}, which looks channels-last "
                             f"(N, H, W, C) ({why}); {who} would take H for the channels. Pass "
                             f"{who}({layer!r}, layout='nhwc') for channels-last stage outputs (Swin), or "
                             "layout='nchw' if it really is (N, C, H, W)")


def check_targets(f: torch.Tensor, targets: torch.Tensor | None, attack_loss: AttackLoss) -> None:
    """Targets: one entry per sample of the feature's batch; ``None`` only for the label-free attack."""
    if targets is None:
        if attack_loss != "kl":
            raise ValueError("targets=None (label-free) needs AdvBN(..., attack_loss='kl'); the default attack "
                             "maximises the cross-entropy with the targets")
        return
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a tensor, got {type(targets).__name__}")
    if targets.dim() == 0 or targets.shape[0] != f.shape[0]:
        raise ValueError(f"targets have shape {tuple(targets.shape)} but the batch has {f.shape[0]} samples: pass "
                         "one class index per sample (N,) or one probability row per sample (N, K)")


def check_finite(layer: str, f: torch.Tensor, f_adv: torch.Tensor | None, nonfinite_grads: torch.Tensor) -> None:
    """One host sync for every check of a step: the layer output ``f``, the perturbed feature ``f_adv`` (if any)
    and the count of non-finite attack gradient entries. Raises ``FloatingPointError`` for non-finite features;
    warns (``RuntimeWarning``) for non-finite gradients, which took no step."""
    bad_in, bad_adv, bad_grad = torch.stack([
        (~torch.isfinite(f)).sum(), (~torch.isfinite(f_adv)).sum() if f_adv is not None else nonfinite_grads * 0,
        nonfinite_grads]).tolist()
    if bad_in:
        raise FloatingPointError(f"the output of layer {layer!r} contains NaN or Inf: the model diverged or the "
                                 "input is not finite; AdvBN refuses to train on it (lower the learning rate, "
                                 "check the inputs, or use AMP with a GradScaler)")
    if bad_adv:
        raise FloatingPointError(f"the perturbed feature at layer {layer!r} contains NaN or Inf although the "
                                 "layer output is finite (overflow in low precision?): lower eps, or run the "
                                 "model in float32 / bfloat16")
    if bad_grad:
        warnings.warn(f"AdvBN at {layer!r}: {bad_grad} non-finite attack gradient entries (float16 overflow?) "
                      "took no step; the multipliers stayed finite", RuntimeWarning, stacklevel=4)
