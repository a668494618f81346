"""Weight averaging for the recipe's training loop: an exponential moving average (EMA) of the model's weights,
kept beside the training and exported as a second model of the run (``model_ema.pt``; AdvBN arms also
``model_ema_adv.pt``, the average through the adversarial BatchNorms).

What is averaged: every floating-point entry of the attached model's ``state_dict``: the parameters and the
BatchNorm running statistics, the adversarial copies of AdvBN's dual BatchNorms included (as timm's ``ModelEmaV3``
averages buffers). The running statistics are themselves an average (momentum 0.1: about the last 10 batches) of the
batch statistics under the weights of their step; averaging them over the same window as the weights matches them to
the averaged weights as far as a pass-free rule can (re-estimating them, as SWA's ``update_bn`` does, would need a
pass over the training set with each arm's augmentation and, for the adversarial copies, the attack). Integer
buffers (``num_batches_tracked``) follow the model.

The average only reads the model: it draws no random numbers and writes nothing the training uses, so the trained
model is bit-identical with and without it (``tests/recipe/core/test_ema.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """``avg <- decay * avg + (1 - decay) * value`` after every optimizer step, for each floating-point entry of
    ``model.state_dict()`` (starting from its values at construction).

    Args:
        model: the model being trained, with its augmenters attached (so dual BatchNorms are included).
        decay: in ``[0, 1)``; ``0`` keeps a copy of the current weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.state: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def _check_keys(self, keys: Any, what: str) -> None:
        if set(keys) != set(self.state):
            diff = sorted(set(keys) ^ set(self.state))
            raise RuntimeError(f"{what} has other state_dict keys than the weight average ({diff[:5]}): the average "
                               "must be made after the augmenters are attached and before training")

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current values into the average (call after each optimizer step)."""
        live = model.state_dict()
        self._check_keys(live, "the model")
        weight = 1.0 - self.decay
        for k, v in live.items():
            avg = self.state[k]
            if avg.is_floating_point():
                avg.lerp_(v, weight)  # exactly avg where the value did not move (the frozen prefix stays as loaded)
            else:
                avg.copy_(v)

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "state"}`` for the resume checkpoint."""
        return {"decay": self.decay, "state": self.state}

    @torch.no_grad()
    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore an average saved by :meth:`state_dict` (same decay, same keys)."""
        if not isinstance(saved, dict) or saved.get("decay") != self.decay or not isinstance(saved.get("state"),
                                                                                             dict):
            got = saved.get("decay") if isinstance(saved, dict) else type(saved).__name__
            raise ValueError(f"the saved weight average has decay {got!r}, this run {self.decay}")
        self._check_keys(saved["state"], "the saved weight average")
        for k, v in saved["state"].items():
            self.state[k].copy_(v)

    def export(self, keys: Sequence[str], route: str = "clean") -> dict[str, torch.Tensor]:
        """The average as a plain model's state dict restricted to ``keys`` (on CPU, contiguous): through the clean
        BatchNorms (``route="clean"``) or their adversarial copies (``"adv"``, models with dual BatchNorms)."""
        from advbn_aug.feature.dual_norm import select_bn_state

        state = select_bn_state(self.state, route)
        missing = [k for k in keys if k not in state]
        if missing:
            raise RuntimeError(f"the weight average lacks the exported keys {missing[:5]}")
        return {k: state[k].detach().cpu().clone().contiguous() for k in keys}
