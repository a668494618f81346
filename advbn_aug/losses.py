"""Consistency losses between predictions: AugMix's Jensen-Shannon loss, and the KL divergence of label-free AdvBN.

AugMix's Jensen-Shannon consistency loss (Hendrycks et al., ICLR 2020, eq. 1):

``JS(p_clean, p_aug1, p_aug2) = 1/K sum_k KL(p_k || M)`` with ``M`` the mean of the ``K`` predicted distributions
(clamped to ``[1e-7, 1]`` before the log, as in the paper's code). The paper weights it by ``lambda = 12`` and adds the
cross-entropy of the clean split only.

:func:`jsd_consistency` gives the JSD term alone (the :class:`~advbn_aug.policy.Policy` weighs it separately);
:func:`augmix_criterion` returns the loss of timm's ``JsdCrossEntropy`` (CE + 12 * JSD) with the paper's settings.
Both take the KL terms from ``log_softmax``: timm's loss (and the paper's code) take them from the probabilities,
whose gradient is NaN once a float32 probability underflows to 0 (``tests/test_losses.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["jsd_consistency", "augmix_criterion", "prediction_kl", "AUGMIX_JSD_WEIGHT"]

AUGMIX_JSD_WEIGHT = 12.0


def _split_logits(logits: torch.Tensor | Sequence[torch.Tensor], num_splits: int | None) -> list[torch.Tensor]:
    if isinstance(logits, torch.Tensor):
        if num_splits is None:
            raise ValueError("pass num_splits with a concatenated logits tensor (e.g. 3 for clean + 2 AugMix views)")
        if logits.dim() != 2 or num_splits < 2 or logits.shape[0] % num_splits:
            raise ValueError(f"logits of shape {tuple(logits.shape)} cannot be split into {num_splits} equal "
                             "views: pass (num_splits * N, K) logits ordered [clean; view1; view2; ...]")
        return list(logits.chunk(num_splits))
    parts = list(logits)
    if len(parts) < 2:
        raise ValueError(f"the JSD needs at least 2 predictions (clean + 1 view), got {len(parts)}")
    shape = parts[0].shape
    if any(p.shape != shape or p.dim() != 2 for p in parts):
        raise ValueError(f"all logits must share one (N, K) shape, got {[tuple(p.shape) for p in parts]}")
    return parts


def jsd_consistency(logits: torch.Tensor | Sequence[torch.Tensor], num_splits: int | None = None) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence between the softmax predictions of several views.

    Args:
        logits: a sequence of ``(N, K)`` logits (clean first), or one ``(num_splits * N, K)`` tensor ordered
            ``[clean; view1; ...]`` (what ``model(torch.cat([clean, v1, v2]))`` returns).
        num_splits: number of views in a concatenated tensor.

    Returns:
        scalar, ``>= 0``; zero iff all views predict the same distribution. Mean over the batch.
    """
    parts = _split_logits(logits, num_splits)
    # KL(p || M) from log p (log_softmax), not from p: a float32 probability that underflows to exactly 0 (a logit
    # gap above ~104) would give xlogy(p, p) a 0/0 gradient and NaN weights
    log_probs = [F.log_softmax(p.float(), dim=1) for p in parts]
    log_mixture = torch.clamp(torch.stack([lp.exp() for lp in log_probs]).mean(0), 1e-7, 1.0).log()
    return sum(F.kl_div(log_mixture, lp, reduction="batchmean", log_target=True) for lp in log_probs) / len(parts)


class _JsdCrossEntropy(nn.Module):
    """Cross-entropy of the clean split plus ``weight`` x :func:`jsd_consistency` of all splits."""

    def __init__(self, num_splits: int, weight: float, smoothing: float) -> None:
        super().__init__()
        self.num_splits, self.weight, self.smoothing = num_splits, weight, smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        parts = _split_logits(logits, self.num_splits)
        ce = F.cross_entropy(parts[0], target[:parts[0].shape[0]], label_smoothing=self.smoothing)
        return ce + self.weight * jsd_consistency(parts)


def augmix_criterion(num_splits: int = 3, weight: float = AUGMIX_JSD_WEIGHT, smoothing: float = 0.0) -> nn.Module:
    """The loss of timm's ``JsdCrossEntropy`` with the paper's settings (no label smoothing; timm's default is 0.1),
    computed without its NaN gradient when a softmax probability underflows to 0 (:func:`jsd_consistency`).

    It expects split-ordered batches ``[clean; view1; ...]`` with ``N`` divisible by ``num_splits`` (targets for
    the whole batch or the clean split) and takes the cross-entropy on the clean split only. Returns a module
    ``(logits, targets) -> scalar``.
    """
    if num_splits < 2:
        raise ValueError(f"num_splits must be >= 2 (clean + at least one augmented view), got {num_splits}")
    return _JsdCrossEntropy(num_splits, weight, smoothing)


def prediction_kl(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(reference) || softmax(logits))`` over the class axis 1, averaged over every other position.

    ``(N, K)`` classification logits or ``(N, K, *)`` dense ones (per-pixel segmentation logits); ``reference`` has
    the same shape and is treated as a constant (detached). Computed in float32; scalar, ``>= 0``. The argument
    order matches a criterion ``(output, target)``, so it is the criterion of label-free AdvBN.
    """
    if logits.shape != reference.shape or logits.dim() < 2:
        raise ValueError(f"logits {tuple(logits.shape)} and reference {tuple(reference.shape)} must share one "
                         "(N, K) or (N, K, *) shape")
    log_p = F.log_softmax(reference.detach().float(), dim=1)
    log_q = F.log_softmax(logits.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean()
