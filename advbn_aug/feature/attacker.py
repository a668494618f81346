"""AdvBN's attack at its layer: :func:`~advbn_aug.feature.attack.run_attack` wired to the model, with what it keeps
from one step to the next.

:class:`LayerAttacker` holds the last multipliers (the ``warm_start`` init, the ``attack_every`` reuse, the
multipliers reported per layer), the ``clamp_min="auto"`` decision per feature rank, the compiled or BN-folded
suffix (``compile_attack`` / ``fold_bn``) and the further layers of multi-layer AdvBN; it runs the label-free
reference pass (``attack_loss="kl"``) and checks that the first attack did something. Used by
:class:`~advbn_aug.AdvBN`, which owns the model, the split and the hooks.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import torch

from advbn_aug.feature.attack import Criterion, SuffixFn, run_attack
from advbn_aug.feature.bn_fold import fold_conv_bn
from advbn_aug.feature.config import AdvBNConfig
from advbn_aug.feature.inert import check_first_attack
from advbn_aug.feature.multi_layer import InnerLayers
from advbn_aug.feature.stats import feature_stats, perturb_stats, stats_view
from advbn_aug.losses import prediction_kl
from advbn_aug.split import FxSplit, ModelSplit

__all__ = ["LayerAttacker", "AttackOut", "Pair"]

_log = logging.getLogger("advbn_aug")

Pair = tuple[torch.Tensor, torch.Tensor]


class AttackOut(NamedTuple):
    """One attack: the multipliers ``m, s`` (the shape of ``mean``), the count of non-finite gradient entries (0-d),
    the feature's channel ``mean`` and, with ``attack_loss="kl"``, the prediction on the unperturbed feature."""

    m: torch.Tensor
    s: torch.Tensor
    nonfinite: torch.Tensor
    mean: torch.Tensor
    reference: torch.Tensor | None


class LayerAttacker:
    """The attack of one :class:`~advbn_aug.AdvBN` and its state between steps (see the module docstring).

    Args:
        config: the AdvBN's settings (attack, clamp, schedule and suffix options are read here).
    """

    def __init__(self, config: AdvBNConfig) -> None:
        self.config = config
        self.split: ModelSplit | None = None
        self.inner: InnerLayers | None = None
        self._multipliers: Pair | None = None
        self._extra_multipliers: tuple[Pair, ...] = ()
        self._steps_seen = 0  # adversarial_loss calls since attach (the attack_every schedule)
        self._suffix_fn: SuffixFn | None = None
        self._auto_clamp: dict[int, float | None] = {}
        self._inert_norms: tuple[str, ...] = ()  # BatchNorms that undo the perturbation unless a clamp applies

    def attach(self, split: ModelSplit, inner: InnerLayers | None, inert_norms: tuple[str, ...]) -> None:
        """Start afresh on ``split`` (the last multipliers and the clamp decisions are dropped)."""
        self.split, self.inner, self._inert_norms = split, inner, inert_norms
        self._auto_clamp = {}
        self._multipliers, self._steps_seen, self._suffix_fn = None, 0, None

    def detach(self) -> None:
        """Forget the split; the last multipliers stay readable (:attr:`multipliers`)."""
        self.split, self.inner, self._suffix_fn = None, None, None

    # ---------------------------------------------------------------- what is kept
    @property
    def multipliers(self) -> Pair | None:
        """``(m, s)`` of the last attack, each ``(1, C, 1, 1)`` (``(N, C, 1, 1)`` per instance); ``None`` before."""
        return self._multipliers

    @property
    def multipliers_by_layer(self) -> dict[str, Pair]:
        """The last attack's ``(m, s)`` per layer: the attacked one first, then the further ones; empty before."""
        if self._multipliers is None or self.split is None:
            return {}
        out = {self.split.layer: self._multipliers}
        if self.inner is not None:
            out.update(zip(self.inner.names, self._extra_multipliers))
        return out

    def clamp(self, dim: int | None) -> float | None | str:
        """The clamp for features of rank ``dim`` (4: maps, 3: tokens; ``None``: not seen yet, ``clamp_min``), with
        ``"auto"`` replaced by the decision once taken."""
        if dim is None:
            return self.config.clamp_min
        spec = self.config.clamp_min if dim == 4 else self.config.token_clamp_min
        return self._auto_clamp.get(dim, "auto") if spec == "auto" else spec

    def clamp_for(self, f: torch.Tensor) -> float | None:
        """The clamp for feature ``f``; ``"auto"`` is decided on the first feature of each rank (0 if non-negative)."""
        spec = self.config.clamp_min if f.dim() == 4 else self.config.token_clamp_min
        if spec != "auto":
            return spec  # type: ignore[return-value]
        if f.dim() not in self._auto_clamp:
            nonneg = bool((f.detach().amin() >= 0).item())
            self._auto_clamp[f.dim()] = 0.0 if nonneg else None
            name = self.split.layer if self.split is not None else "the layer"
            _log.info("AdvBN at %r: clamp_min='auto' -> %s (the output on the first training batch is %s)", name,
                      "0.0" if nonneg else "None", "non-negative" if nonneg else "signed")
        return self._auto_clamp[f.dim()]

    def count_step(self) -> bool:
        """Count a training step; ``True`` when it reuses the last multipliers (``attack_every`` > 1)."""
        every = self.config.attack_every
        reuse = every > 1 and self._steps_seen % every != 0
        self._steps_seen += 1
        return reuse

    def inner_pass(self) -> AbstractContextManager[None]:
        """The further layers' last multipliers applied (multi-layer AdvBN), or nothing."""
        if self.inner is None:
            return nullcontext()
        return self.inner.active(self._extra_multipliers)

    # ---------------------------------------------------------------- the attack
    def _attack_suffix(self, eager: SuffixFn) -> SuffixFn:
        """The downstream layers for the attack passes (eval mode): ``eager``, or built once from the fx graph
        (``fold_bn``) and compiled (``compile_attack``)."""
        cfg = self.config
        if not (cfg.compile_attack or cfg.fold_bn):
            return eager
        if self._suffix_fn is None:
            split = self.split
            assert isinstance(split, FxSplit)
            fn = split.eval_suffix(fold_conv_bn if cfg.fold_bn else (lambda gm: gm))
            self._suffix_fn = torch.compile(fn) if cfg.compile_attack else fn
        return self._suffix_fn

    def _previous(self, mean: torch.Tensor) -> Pair | None:
        """The last multipliers in ``mean``'s shape, or ``None`` if there are none for this channel count."""
        last = self._multipliers
        if last is None or last[0].numel() != mean.numel():
            return None
        return last[0].reshape(mean.shape), last[1].reshape(mean.shape)

    def run(self, f: torch.Tensor, targets: torch.Tensor | None, criterion: Criterion | None, *, eager: SuffixFn,
            own_pass: AbstractContextManager[None], reuse: bool = False) -> AttackOut:
        """The multipliers for feature ``f`` (``(N, C, H, W)``, ``(N, H, W, C)`` with ``layout="nhwc"``, or
        ``(N, T, C)``); ``reuse`` returns the last ones without attacking.

        ``eager`` runs the downstream layers in eval mode (``(N, ...) -> logits``); ``own_pass`` is entered around
        the passes (AdvBN's hooks and the feature augmenters inert, the adversarial norms on). With
        ``attack_loss="kl"`` the attack maximises the KL to the prediction on the unperturbed feature (returned as
        ``reference``) and starts from a random point.
        """
        assert self.split is not None
        cfg = self.config
        view, shape = stats_view(f, cfg.layout == "nhwc"), f.shape
        mean = feature_stats(view, cfg.stats == "instance").mean
        clamp = self.clamp_for(f)
        suffix = self._attack_suffix(eager)
        reference = None
        with own_pass:
            if cfg.attack_loss == "kl":
                with torch.no_grad():
                    ones = torch.ones_like(mean)
                    reference = suffix(perturb_stats(view, mean, ones, ones, clamp).to(f.dtype).reshape(shape))
                criterion, targets = prediction_kl, reference
            previous = self._previous(mean)
            if reuse and previous is not None:
                return AttackOut(*previous, torch.zeros((), dtype=torch.int64, device=f.device), mean, reference)
            inner, extra_starts = self.inner, []
            if inner is not None:
                if inner.shapes is None:  # first attack: one unperturbed pass finds the layers' channels
                    ones = torch.ones_like(mean)
                    with torch.no_grad(), inner.recording():
                        suffix(perturb_stats(view, mean, ones, ones, clamp).to(f.dtype).reshape(shape))
                extra_starts = inner.starts(f.device)

                def attacked(x: torch.Tensor, pairs: list) -> torch.Tensor:
                    with inner.active(pairs):
                        return suffix(x.reshape(shape))
            else:
                def attacked(x: torch.Tensor) -> torch.Tensor:
                    return suffix(x.reshape(shape))
            m, s, nonfinite, extra = run_attack(attacked, view, targets, eps=cfg.eps, step_size=cfg.step_size,
                                                steps=cfg.steps, clamp=clamp, criterion=criterion,
                                                init=previous if cfg.warm_start else None,
                                                random_start=cfg.random_start or cfg.attack_loss == "kl",
                                                mean=mean, extra_starts=extra_starts)
            self._extra_multipliers = extra
            if self._multipliers is None:  # the first attack: did it do anything?
                check_first_attack(self.split, cfg, self._inert_norms, clamp, m, s, nonfinite)
        n = m.shape[0]  # 1 for batch statistics, N per instance
        self._multipliers = (m.reshape(n, -1, 1, 1), s.reshape(n, -1, 1, 1))
        return AttackOut(m, s, nonfinite, mean, reference)
