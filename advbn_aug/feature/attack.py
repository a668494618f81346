"""The AdvBN attack as a pure function: PGD on the per-channel statistics multipliers ``(m, s)``.

For people who split their model themselves: give the downstream part as a callable and the layer output, get the
worst-case multipliers back. :class:`~advbn_aug.AdvBN` uses exactly this function.

::

    m, s = attack_stats(lambda f: head(f), feature, targets, eps=1.1, step_size=0.2, steps=6, clamp=0.0)
    f_adv = perturb_stats(feature, feature_stats(feature).mean, m, s, 0.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from advbn_aug.feature.stats import feature_layout, feature_stats, perturb_stats

__all__ = ["attack_stats", "run_attack", "AttackResult", "Criterion", "SuffixFn"]

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SuffixFn = Callable[[torch.Tensor], torch.Tensor]


def _autocast_loss_scale(f: torch.Tensor) -> float:
    """A constant loss scale that keeps float16 gradients from underflowing (the sign step ignores it)."""
    if f.is_cuda and torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.float16:
        return 1024.0
    return 1.0


class AttackResult(NamedTuple):
    """The multipliers ``m, s`` and ``nonfinite``, the count of non-finite gradient entries met (a 0-d tensor:
    reading it synchronises with the device, so read it only when needed); ``extra``: the multipliers of the further
    layers (multi-layer attack), in the order given."""

    m: torch.Tensor
    s: torch.Tensor
    nonfinite: torch.Tensor
    extra: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()


def _start(mean: torch.Tensor, lo: float, hi: float, init: tuple[torch.Tensor, torch.Tensor] | None,
           random_start: bool, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The attack's starting multipliers: ``init`` (clamped to the box) if given, else a uniform draw in the box
    (``random_start``), else ones."""
    if init is not None:
        m0, s0 = init
        if m0.numel() != mean.numel() or s0.numel() != mean.numel():
            raise ValueError(f"init multipliers have {m0.numel()} / {s0.numel()} entries, the feature has "
                             f"{mean.numel()} channels")
        return (m0.detach().to(mean).reshape(mean.shape).clamp(lo, hi),
                s0.detach().to(mean).reshape(mean.shape).clamp(lo, hi))
    if random_start:
        u = torch.rand((2, *mean.shape), generator=generator, device=mean.device, dtype=mean.dtype)
        return lo + (hi - lo) * u[0], lo + (hi - lo) * u[1]
    return torch.ones_like(mean), torch.ones_like(mean)


def run_attack(suffix_fn: SuffixFn, feature: torch.Tensor, targets: torch.Tensor, *, eps: float, step_size: float,
               steps: int, clamp: float | None, criterion: Criterion | None = None,
               init: tuple[torch.Tensor, torch.Tensor] | None = None, random_start: bool = False,
               generator: torch.Generator | None = None, mean: torch.Tensor | None = None,
               extra_starts: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()) -> AttackResult:
    """:func:`attack_stats` that also reports non-finite gradients (what :class:`~advbn_aug.AdvBN` checks).

    ``mean`` is the feature's per-channel mean (multiplier shape) when the caller already has it.
    ``extra_starts``: starting multipliers of further layers perturbed by the same attack (multi-layer AdvBN); the
    suffix is then called as ``suffix_fn(x, extra)`` with ``extra`` the current ``[(m_k, s_k), ...]`` (it applies
    them at those layers), and every pair takes the same sign steps in the same box.
    """
    feature_layout(feature)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    criterion = criterion or F.cross_entropy
    f = feature.detach()
    mean = feature_stats(f).mean if mean is None else mean
    lo, hi = 1.0 - eps, 1.0 + eps
    params = [*_start(mean, lo, hi, init, random_start, generator)]
    for em, es in extra_starts:
        params += [em.detach().clone(), es.detach().clone()]
    nonfinite = torch.zeros((), dtype=torch.int64, device=f.device)
    scale = _autocast_loss_scale(f)
    with torch.enable_grad():
        for _ in range(steps):
            for p in params:
                p.requires_grad_(True)
            x = perturb_stats(f, mean, params[0], params[1], clamp).to(f.dtype)
            pairs = [(params[i], params[i + 1]) for i in range(2, len(params), 2)]
            out = suffix_fn(x, pairs) if extra_starts else suffix_fn(x)
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"the suffix returned {type(out).__name__}; the attack needs a logits tensor")
            loss = criterion(out.float(), targets)
            grads = torch.autograd.grad(loss * scale, params, allow_unused=bool(extra_starts))
            with torch.no_grad():
                # only finite gradient entries take a step: an fp16 overflow never turns a multiplier into NaN
                stepped = []
                for p, g in zip(params, grads):
                    g = torch.zeros_like(p) if g is None else g
                    ok = torch.isfinite(g)
                    nonfinite += (~ok).sum()
                    stepped.append((p + step_size * torch.where(ok, g.sign(), 0.0)).clamp_(lo, hi))
                params = stepped
    params = [p.detach() for p in params]
    extra = tuple((params[i], params[i + 1]) for i in range(2, len(params), 2))
    return AttackResult(params[0], params[1], nonfinite, extra)


def attack_stats(suffix_fn: SuffixFn, feature: torch.Tensor, targets: torch.Tensor, *, eps: float = 1.1,
                 step_size: float = 0.2, steps: int = 6, clamp: float | None = 0.0,
                 criterion: Criterion | None = None, init: tuple[torch.Tensor, torch.Tensor] | None = None,
                 random_start: bool = False, generator: torch.Generator | None = None, per_instance: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Worst-case statistics multipliers for ``feature`` (``docs/algorithm.md``; the defaults are the paper's).

    Args:
        suffix_fn: the layers after the cut, ``feature -> logits``; run it in eval mode (the paper's attack does).
        feature: the layer output, ``(N, C, H, W)`` or ``(N, T, C)``; treated as a constant.
        targets: what ``criterion`` compares the logits with (class indices ``(N,)`` for cross-entropy).
        eps: the multipliers stay in ``[1 - eps, 1 + eps]``.
        step_size: sign-gradient step on the multipliers.
        steps: number of PGD steps (0 returns the starting point: ones, ``init`` or the random draw).
        clamp: lower clamp of the perturbed feature (0 re-applies a ReLU); ``None`` for no clamp.
        criterion: the loss the attack maximises (default cross-entropy).
        init: starting multipliers ``(m, s)`` (e.g. the previous batch's: the "free" warm start); default ones.
        random_start: start from a uniform draw in the box instead of ones (ignored with ``init``); with
            ``steps=1`` and a large ``step_size`` this is the FGSM-with-random-start form.
        generator: the random source of ``random_start`` (default: torch's global generator).
        per_instance: one ``(m, s)`` per sample and channel on each sample's own statistics (instance-level AdvBN;
            multipliers ``(N, C, 1, 1)`` / ``(N, 1, C)``) instead of the batch's.

    Returns:
        ``(m, s)``, each of the multiplier shape (``(1, C, 1, 1)`` or ``(1, 1, C)``), float32, detached. Only these
        get gradients: no parameter ``.grad`` is written. Non-finite gradient entries take no step.
    """
    result = run_attack(suffix_fn, feature, targets, eps=eps, step_size=step_size, steps=steps, clamp=clamp,
                        criterion=criterion, init=init, random_start=random_start, generator=generator,
                        mean=feature_stats(feature.detach(), per_instance).mean)
    return result.m, result.s
