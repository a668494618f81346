"""Feature-space shifts to decode: the AdvBN worst case against a model, AdaIN to another image's statistics,
MixStyle and DSU draws. All take and return layer features ``(N, C, h, w)``.

:class:`SuffixModel` runs the layers after the cut (any model: ``torch.fx`` suffix graph, or the hook split fed with
the images), which the AdvBN attack differentiates through.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from advbn_aug.feature.attack import run_attack
from advbn_aug.feature.base import instance_stats
from advbn_aug.feature.dsu import DSU
from advbn_aug.feature.mixstyle import MixStyle
from advbn_aug.feature.stats import feature_stats, perturb_stats
from advbn_aug.split import SplitFallbackWarning, split_model
from advbn_aug.visualise.source import LayerEncoder

__all__ = ["SuffixModel", "AdvBNShift", "advbn_shift", "adain", "mixstyle_shift", "dsu_shift", "clamp_for"]


def clamp_for(feature: torch.Tensor, clamp_min: float | None) -> float | None:
    """``clamp_min`` when ``feature`` is non-negative (post-ReLU, AdvBN's ``clamp_min='auto'`` rule), else ``None``."""
    if clamp_min is None:
        return None
    return float(clamp_min) if bool((feature.detach().amin() >= 0).item()) else None


class SuffixModel:
    """The part of ``encoder.model`` after ``encoder.layer``: ``(feature (N, C, h, w), images (N, 3, H, W) in
    [0, 1]) -> logits``, in eval mode. ``images`` are only read by models that fall back to the hook split."""

    def __init__(self, encoder: LayerEncoder):
        self.encoder = encoder
        example = torch.zeros(1, 3, encoder.img_size, encoder.img_size,
                              device=next(iter(encoder.model.parameters()), torch.zeros(())).device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SplitFallbackWarning)  # either path gives the same logits
            self.split = split_model(encoder.model, encoder.layer, example_inputs=(encoder.normalise(example),))

    def __call__(self, feature: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        out = self.split.run_suffix(feature, train=False, inputs=((self.encoder.normalise(images),), {}))
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the model returned {type(out).__name__}; the AdvBN attack needs a logits tensor")
        return out

    def close(self) -> None:
        self.split.close()


@dataclass
class AdvBNShift:
    """An AdvBN worst case: the perturbed features, the multipliers ``m, s`` (``(1, C, 1, 1)``, or ``(N, C, 1, 1)``
    per instance) and the model's logits on the clean and on the perturbed features."""

    features: torch.Tensor
    m: torch.Tensor
    s: torch.Tensor
    clean_logits: torch.Tensor
    adv_logits: torch.Tensor


def advbn_shift(suffix: SuffixModel, feature: torch.Tensor, images: torch.Tensor, targets: torch.Tensor, *,
                eps: float, steps: int, step_size: float = 0.2, clamp_min: float | None = 0.0,
                per_instance: bool = False) -> AdvBNShift:
    """AdvBN's PGD on the statistics multipliers of ``feature`` (``docs/algorithm.md``) against ``suffix``
    with labels ``targets`` ``(N,)``; the clamp follows :func:`clamp_for`."""
    f = feature.detach()
    clamp = clamp_for(f, clamp_min)
    mean = feature_stats(f, per_instance).mean

    def run(x: torch.Tensor) -> torch.Tensor:
        return suffix(x, images)

    m, s, _, _ = run_attack(run, f, targets, eps=eps, step_size=step_size, steps=steps, clamp=clamp, mean=mean)
    with torch.no_grad():
        adv = perturb_stats(f, mean, m, s, clamp).to(f.dtype)
        return AdvBNShift(adv, m, s, run(f), run(adv))


def adain(content: torch.Tensor, style: torch.Tensor, *, clamp_min: float | None = 0.0, eps: float = 1e-5
          ) -> torch.Tensor:
    """Each content map's channel mean/std (over ``h, w``) replaced by the style map's: ``content`` ``(N, C, h, w)``,
    ``style`` ``(1 or N, C, h', w')``; clamped per :func:`clamp_for` of the content (post-ReLU stays non-negative)."""
    if style.dim() != 4 or style.shape[1] != content.shape[1] or style.shape[0] not in (1, content.shape[0]):
        raise ValueError(f"style features {tuple(style.shape)} do not match content {tuple(content.shape)}: need "
                         "(1 or N, C, h, w) from the same layer")
    mu_c, sig_c = instance_stats(content, eps)
    mu_s, sig_s = instance_stats(style, eps)
    out = (content.float() - mu_c) / sig_c * sig_s + mu_s
    clamp = clamp_for(content, clamp_min)
    return (out.clamp_min(clamp) if clamp is not None else out).to(content.dtype)


def mixstyle_shift(feature: torch.Tensor, *, alpha: float = 0.1, seed: int = 0) -> torch.Tensor:
    """One MixStyle draw (random partners, ``lam ~ Beta(alpha, alpha)``) on ``feature`` ``(N, C, h, w)``."""
    return MixStyle(p=1.0, alpha=alpha, seed=seed).augment(feature)


def dsu_shift(feature: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """One DSU draw (statistics resampled with the batch's uncertainty) on ``feature`` ``(N, C, h, w)``."""
    return DSU(p=1.0, seed=seed).augment(feature)
