"""MixStyle (Zhou, Yang, Qiao, Xiang, "Domain Generalization with MixStyle", ICLR 2021) as a hooked augmenter.

At the hooked layer, with probability ``p`` per training forward (the whole batch), each sample's instance statistics
``mu, sig`` (channel mean and ``sqrt(var + eps)`` over ``(H, W)``, detached as in the paper) are mixed with a partner
sample's::

    out = (x - mu) / sig * (lam * sig + (1 - lam) * sig[perm]) + (lam * mu + (1 - lam) * mu[perm]),  lam ~ Beta(a, a)

Partners (``perm``): ``mode="random"``: a random permutation of the batch. ``mode="crossdomain"``: each sample's
partner is drawn uniformly from the samples of *other* domains (with replacement, so odd batch sizes and unequal
domain counts work; a sample may be the partner of several). Domain labels of the batch are given before the forward
with :meth:`MixStyle.set_domains` or ``with mixstyle.domains(labels): ...``; a batch of one domain falls back to
``random`` (warned once per instance). The paper's code instead assumes a batch of two equal halves and swaps them.

Example::

    ms = MixStyle("layer1", p=0.5, alpha=0.1).attach(model)
    ...; loss = F.cross_entropy(model(images), targets)   # train mode: styles mixed; eval mode: untouched
    model = ms.detach()
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

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
    sample_beta,
)
from advbn_aug.feature.config import Layout

__all__ = ["MixStyle", "MixStyleConfig", "MixMode"]

MixMode = Literal["random", "crossdomain"]


@dataclass
class MixStyleConfig(DictConfig):
    """MixStyle settings (YAML/dict round trip).

    Args:
        layer: module name or timm ``feature_info`` index whose output is re-styled (see ``layout``).
        p: probability that a training forward is augmented (the whole batch).
        alpha: Beta(alpha, alpha) concentration of the mixing weight ``lam`` (> 0; the paper: 0.1).
        eps: added to the variance before the square root.
        mode: ``"random"`` (partner: random permutation) or ``"crossdomain"`` (partner from another domain).
        seed: seeds a private CPU ``torch.Generator`` (reproducible draws); ``None``: the global RNG.
        layout: ``"auto"`` | ``"nchw"`` | ``"nhwc"``, see :data:`~advbn_aug.feature.base.LAYOUT_HELP`.
    """

    layer: str | int = "layer1"
    p: float = 0.5
    alpha: float = 0.1
    eps: float = 1e-6
    mode: MixMode = "random"
    seed: int | None = None
    layout: Layout = layout_field()

    def __post_init__(self) -> None:
        self.p = check_probability(self.p)
        self.alpha = check_positive(self.alpha, "alpha", "Beta(alpha, alpha) concentration")
        self.eps = check_positive(self.eps, "eps")
        if self.mode not in ("random", "crossdomain"):
            raise ValueError(f"mode must be 'random' or 'crossdomain', got {self.mode!r}")
        self.layout = check_layout_option(self.layout)


class MixStyle(StatsAugmenter):
    """MixStyle at one layer: each sample's instance statistics mixed with a partner's, in training forwards.

    The layer output ``(N, C, H, W)`` (``(N, H, W, C)`` with ``layout="nhwc"``, or ``(N, T, C)`` tokens) is replaced
    by the re-styled feature of the same shape, dtype and memory format; eval forwards are untouched.

    Args (the fields of :class:`MixStyleConfig` are the keyword arguments):
        layer: module name or timm ``feature_info`` index whose output is re-styled.
        p: probability that a training forward is augmented (default 0.5).
        alpha: Beta(alpha, alpha) concentration of the mixing weight (default 0.1).
        mode: ``"random"`` or ``"crossdomain"`` partners (see :meth:`set_domains`).
        generator: source of the draws (default: seeded from ``seed`` when set, else torch's global RNG).

    Parameters (:meth:`generate_parameters`): ``applied`` (bool), ``lam`` ``(N,)`` float32 and ``perm`` ``(N,)``
    int64 (each sample's partner index), on the feature's device.
    """

    kind = "mixstyle"
    config_class = MixStyleConfig
    config: MixStyleConfig

    def __init__(self, layer: str | int = "layer1", *, generator: torch.Generator | None = None,
                 **options: Any) -> None:
        super().__init__(layer, generator=generator, **options)
        self._domains: torch.Tensor | None = None  # the domain label per sample (mode="crossdomain")
        self._warned_one_domain = False

    def _describe(self) -> str:
        return f"alpha={self.config.alpha}, mode={self.config.mode!r}"

    # ---------------------------------------------------------------- domains
    def set_domains(self, labels: torch.Tensor | Sequence[int] | None) -> None:
        """Domain label per sample of the next batch(es) (``(N,)`` integers), used by ``mode="crossdomain"``;
        ``None`` clears them. They stay until changed; a batch of another size raises."""
        if labels is None:
            self._domains = None
            return
        t = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(list(labels))
        if t.dim() != 1 or t.is_floating_point() or t.is_complex():
            raise ValueError(f"domain labels must be a 1-D integer tensor (one per sample), got shape "
                             f"{tuple(t.shape)} {t.dtype}")
        self._domains = t.detach().long()

    @contextmanager
    def domains(self, labels: torch.Tensor | Sequence[int] | None) -> Iterator[MixStyle]:
        """``with ms.domains(labels): model(x)``: the labels for the forwards inside the block, then the previous."""
        saved = self._domains
        self.set_domains(labels)
        try:
            yield self
        finally:
            self._domains = saved

    # ---------------------------------------------------------------- parameters
    def _partners(self, n: int, device: torch.device) -> torch.Tensor:
        g = self.generator
        if self.config.mode == "crossdomain":
            if self._domains is None:
                raise RuntimeError("MixStyle(mode='crossdomain') needs the batch's domain labels: call "
                                   "mixstyle.set_domains(labels) or use `with mixstyle.domains(labels):` before the "
                                   "forward (or use mode='random')")
            d = self._domains.to(device)
            if d.numel() != n:
                raise ValueError(f"MixStyle has {d.numel()} domain labels but the batch has {n} samples: set the "
                                 "labels of this batch (with AugMix views, repeat them per view)")
            other = d[:, None] != d[None, :]  # (N, N): candidates from other domains
            if bool(other.any()):  # two domains or more: every row has a candidate
                return torch.multinomial(other.float(), 1, generator=g).squeeze(1)
            if not self._warned_one_domain:
                warnings.warn("MixStyle(mode='crossdomain'): the batch holds a single domain, falling back to "
                              "random partners (warned once)", UserWarning, stacklevel=2)
                self._warned_one_domain = True
        return torch.randperm(n, generator=g, device=device)

    def _generate(self, shape: tuple[int, ...], device: torch.device) -> Params:
        n = shape[0]
        where = self._param_device(torch.device("cpu"))  # N values: draw on the CPU (no device syncs), then move
        lam = sample_beta(self.config.alpha, n, generator=self.generator, device=where)
        perm = self._partners(n, where)
        return {"lam": lam.to(device), "perm": perm.to(device)}

    def _apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, H, W)`` (any layout arrives here as that view): statistics in float32, result in
        ``x``'s dtype."""
        lam, perm = params["lam"], params["perm"]
        if lam.shape != (x.shape[0],) or perm.shape != (x.shape[0],):
            raise ValueError(f"MixStyle parameters are for {lam.shape[0]} samples, the feature has {x.shape[0]}")
        mu, sig = instance_stats(x.detach(), self.config.eps)
        lam = lam.to(device=x.device, dtype=torch.float32).view(-1, 1, 1, 1)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sig_mix = lam * sig + (1 - lam) * sig[perm]
        return ((x.float() - mu) / sig * sig_mix + mu_mix).to(x.dtype)
