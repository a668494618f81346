"""DSU (Li, Dai, Zhao, Lu, Yang, "Uncertainty Modeling for Out-of-Distribution Generalization", ICLR 2022) as a
hooked augmenter.

At the hooked layer, with probability ``p`` per training forward (the whole batch), each sample's instance statistics
``mu, sig`` (channel mean and ``sqrt(var + eps)`` over ``(H, W)``) are resampled around themselves with the batch's
uncertainty of those statistics::

    Sigma_mu = sqrt(var_N(mu) + eps),  Sigma_sig = sqrt(var_N(sig) + eps)      (per channel, over the batch)
    beta = mu + e1 * Sigma_mu,  gamma = sig + e2 * Sigma_sig,  e1, e2 ~ N(0, 1) per sample and channel
    out = (x - mu) / sig * gamma + beta

As in the reference code the statistics are not detached (gradients flow through them) and variances are unbiased.
A batch of one sample has no batch uncertainty (the reference gives NaN): it is defined as zero, so the feature is
returned unchanged.

Example::

    dsu = DSU("layer2", p=0.5).attach(model)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advbn_aug.config import DictConfig
from advbn_aug.feature.base import (
    Params,
    StatsAugmenter,
    check_layout_option,
    check_positive,
    check_probability,
    instance_stats,
    layout_field,
)
from advbn_aug.feature.config import Layout

__all__ = ["DSU", "DSUConfig"]


@dataclass
class DSUConfig(DictConfig):
    """DSU settings (YAML/dict round trip).

    Args:
        layer: module name or timm ``feature_info`` index whose output is perturbed (see ``layout``).
        p: probability that a training forward is augmented (the whole batch).
        eps: added to every variance before the square root.
        seed: seeds a private CPU ``torch.Generator`` (reproducible draws); ``None``: the global RNG.
        layout: ``"auto"`` | ``"nchw"`` | ``"nhwc"``, see :data:`~advbn_aug.feature.base.LAYOUT_HELP`.
    """

    layer: str | int = "layer1"
    p: float = 0.5
    eps: float = 1e-6
    seed: int | None = None
    layout: Layout = layout_field()

    def __post_init__(self) -> None:
        self.p = check_probability(self.p)
        self.eps = check_positive(self.eps, "eps")
        self.layout = check_layout_option(self.layout)


class DSU(StatsAugmenter):
    """DSU at one layer: each sample's instance statistics resampled with the batch's uncertainty, in training forwards.

    The layer output ``(N, C, H, W)`` (``(N, H, W, C)`` with ``layout="nhwc"``, or ``(N, T, C)`` tokens) is replaced
    by the perturbed feature of the same shape, dtype and memory format; eval forwards are untouched.

    Args (the fields of :class:`DSUConfig` are the keyword arguments):
        layer: module name or timm ``feature_info`` index whose output is perturbed.
        p: probability that a training forward is augmented (default 0.5).
        eps: added to every variance before the square root (default 1e-6).
        generator: source of the draws (default: seeded from ``seed`` when set, else torch's global RNG).

    Parameters (:meth:`generate_parameters`): ``applied`` (bool), ``noise_mu`` and ``noise_sig`` ``(N, C)``
    float32 standard normal draws (``e1``, ``e2``), on the feature's device.
    """

    kind = "dsu"
    config_class = DSUConfig
    config: DSUConfig

    def _describe(self) -> str:
        return f"eps={self.config.eps}"

    def _generate(self, shape: tuple[int, ...], device: torch.device) -> Params:
        n, c = shape[0], shape[1]
        where = self._param_device(device)
        noise = torch.randn(2, n, c, generator=self.generator, device=where)
        return {"noise_mu": noise[0].to(device), "noise_sig": noise[1].to(device)}

    def _sampled(self, x: torch.Tensor, params: Params) -> tuple[torch.Tensor, ...]:
        """``(mu, sig, beta, gamma)`` for ``x`` ``(N, C, H, W)``, float32 ``(N, C, 1, 1)``."""
        n, c = x.shape[:2]
        for key in ("noise_mu", "noise_sig"):
            if tuple(params[key].shape) != (n, c):
                raise ValueError(f"DSU parameter {key!r} has shape {tuple(params[key].shape)}, the feature needs "
                                 f"{(n, c)}")
        mu, sig = instance_stats(x, self.config.eps)
        if n == 1:  # no batch to measure uncertainty on: zero
            return mu, sig, mu, sig
        eps = self.config.eps
        sigma_mu = (mu.var(dim=0, keepdim=True) + eps).sqrt()
        sigma_sig = (sig.var(dim=0, keepdim=True) + eps).sqrt()
        e1 = params["noise_mu"].to(device=x.device, dtype=torch.float32).view(n, c, 1, 1)
        e2 = params["noise_sig"].to(device=x.device, dtype=torch.float32).view(n, c, 1, 1)
        return mu, sig, mu + e1 * sigma_mu, sig + e2 * sigma_sig

    def sample_stats(self, x: torch.Tensor, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampled ``(beta, gamma)`` for a layer output ``x`` (any layout), float32 ``(N, C, 1, 1)``: the
        output's instance mean and (up to a factor ``sqrt(var / (var + eps))``) its instance std ``|gamma|``."""
        return self._sampled(self._statistics_view(x), params)[2:]

    def _apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``: statistics in float32, result in ``x``'s dtype; a batch of one: ``x``."""
        mu, sig, beta, gamma = self._sampled(x, params)
        if x.shape[0] == 1:
            return x
        return ((x.float() - mu) / sig * gamma + beta).to(x.dtype)
