"""Plain models from ones that carry AdvBN or feature augmenters: :func:`strip_advbn`.

``adv.detach()`` converts the model ``adv`` is attached to. A deep copy made while attached (timm's ``ModelEmaV3``
keeps one; ``copy.deepcopy(model)`` for a checkpoint) carries copies of the hooks, each with its own copy of the
AdvBN / augmenter as owner, and the adversarial norm copies (``*.aux_bn.*`` keys); those owners are reachable only
through the hooks. :func:`strip_advbn` finds them there and detaches each, so any such model becomes the plain one.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from advbn_aug.feature.advbn import AdvBN
from advbn_aug.feature.base import StatsAugmenter
from advbn_aug.feature.dual_norm import Route, fold_dual_norm, is_dual_norm
from advbn_aug.feature.hooks import hook_owners, remove_hooks

__all__ = ["strip_advbn"]


def _owners(model: nn.Module) -> list[Any]:
    """The AdvBN and augmenter objects whose hooks sit in ``model``, in the order they are found."""
    return [owner for owner in hook_owners(model) if isinstance(owner, (AdvBN, StatsAugmenter))]


def strip_advbn(model: nn.Module, keep: Route = "clean", *, inplace: bool = False) -> nn.Module:
    """``model`` without AdvBN or feature augmenters: hooks removed, dual norms folded back (``keep="clean"``, or the
    adversarial copies with ``keep="adv"``), frozen-prefix flags restored; original classes and ``state_dict`` keys.

    For a model holding a copy of an attached AdvBN, e.g. the EMA of timm's ``ModelEmaV3`` (a deep copy made while
    attached): ``plain_ema = strip_advbn(ema.module)``. By default a deep copy is stripped and returned, so the EMA
    (still updated from the attached model) and the model itself are left as they are; ``inplace=True`` strips
    ``model`` itself (for the model an AdvBN is attached to, the same as ``adv.detach(keep)``).
    """
    if keep not in ("clean", "adv"):
        raise ValueError(f"keep must be 'clean' or 'adv', got {keep!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"strip_advbn takes an nn.Module (the model, or ema.module), got {type(model).__name__}; "
                        "for a state_dict use select_bn_state(state_dict, 'clean')")
    if inplace:
        inside = {id(m) for m in model.modules()}
        for owner in _owners(model):
            if owner.model is not None and id(owner.model) not in inside:
                raise ValueError(f"{type(model).__name__} is part of the {type(owner.model).__name__} that "
                                 f"{type(owner).__name__} at {owner.config.layer!r} is attached to: strip that model "
                                 "(or call detach() on the augmenter), or pass inplace=False for a stripped copy")
    else:
        model = copy.deepcopy(model)  # the hooks' owners are copied with it: detaching them touches only the copy
    for owner in reversed(_owners(model)):
        if isinstance(owner, AdvBN) and owner.model is not None:
            owner.detach(keep=keep)
        elif isinstance(owner, StatsAugmenter) and owner.model is not None:
            owner.detach()
    remove_hooks(model)  # those left (their owner is not attached)
    fold_dual_norm([m for m in model.modules() if is_dual_norm(m)], keep=keep)
    return model
