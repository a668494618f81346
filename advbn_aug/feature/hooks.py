"""Hooks owned by a feature augmenter (AdvBN, MixStyle, DSU): written once, found and removed by owner.

Every hook an augmenter puts on a model is an :class:`OwnedHook`: a callable object that holds its ``owner``. Hooks
are found and removed by walking the model's modules, not through the handles ``register_*_hook`` returns: a deep
copy of the model (timm's ``ModelEmaV3``, a checkpoint copy) carries copies of the hooks, each owned by its own copy
of the augmenter, which handles taken on the original would miss.

A hook acts only in a training forward of the model the owner is attached to (:func:`training_forward`): eval
forwards and ``torch.fx`` tracing pass through it untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

__all__ = ["OwnedHook", "EvalModeHook", "owned_hooks", "hook_owners", "remove_hooks", "training_forward"]

_H = TypeVar("_H", bound="OwnedHook")


class OwnedHook:
    """Base of the hook objects an augmenter registers (forward or forward pre-hooks); ``owner``: the augmenter."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner


class EvalModeHook(OwnedHook):
    """Forward pre-hook that runs its module in eval mode, whichever method of the model calls it (a frozen
    prefix: its BatchNorms keep their running statistics)."""

    def __call__(self, module: nn.Module, args: Any) -> None:
        if module.training:
            module.training = False


def _hook_dicts(m: nn.Module) -> tuple[dict, dict]:
    return m._forward_hooks, m._forward_pre_hooks


def owned_hooks(model: nn.Module, kind: type[_H]) -> Iterator[_H]:
    """The hooks of type ``kind`` on ``model`` and its submodules: per module, forward hooks then pre-hooks."""
    for m in model.modules():
        for hooks in _hook_dicts(m):
            yield from (h for h in hooks.values() if isinstance(h, kind))


def hook_owners(model: nn.Module, kind: type[OwnedHook] = OwnedHook) -> list[Any]:
    """The distinct owners of the hooks of type ``kind`` on ``model``, in the order :func:`owned_hooks` finds them."""
    found: dict[int, Any] = {}
    for hook in owned_hooks(model, kind):
        found.setdefault(id(hook.owner), hook.owner)
    return list(found.values())


def remove_hooks(model: nn.Module, owner: Any = None) -> None:
    """Remove the :class:`OwnedHook` hooks of ``owner`` (every owned hook when ``None``) from ``model``'s modules."""
    for m in model.modules():
        for hooks in _hook_dicts(m):
            for key in [k for k, h in hooks.items()
                        if isinstance(h, OwnedHook) and (owner is None or h.owner is owner)]:
                del hooks[key]
                for extra in (m._forward_pre_hooks_with_kwargs, m._forward_hooks_with_kwargs,
                              m._forward_hooks_always_called):
                    extra.pop(key, None)


def training_forward(model: nn.Module) -> bool:
    """Whether hooks act in the current forward of ``model``: it is in train mode and ``torch.fx`` is not tracing."""
    return model.training and not is_fx_symbolic_tracing()
