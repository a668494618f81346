"""Layers where AdvBN does nothing: the checks :class:`~advbn_aug.AdvBN` and ``advbn-aug layers`` run.

Batch-shared multipliers without a clamp map each channel affinely, ``f -> s * f + mu * (m - s)``. A BatchNorm that
normalises with the batch's own statistics (every BatchNorm in the adversarial pass, which runs in train mode) undoes
any such map with ``s > 0``: if a layer's output reaches only BatchNorms, through ops that keep channels apart
(concatenation along the channels, average pooling), the adversarial features equal the clean ones up to channels the
attack flips (``s < 0``) or erases (``s ~ 0``). DenseNet block and transition outputs and pre-activation ResNet
(``resnetv2``) stage outputs are such layers. :func:`batchnorms_after` proves it from the torch.fx suffix graph
(nothing runs); a ReLU clamp (``clamp_min=0``, or ``"auto"`` on a non-negative output) or per-sample multipliers
(``stats="instance"``) break the cancellation.

The hook split has no graph to read, so such a BatchNorm goes unnoticed there (the attack itself runs in eval mode,
where BatchNorms use running statistics and do respond). What the first attack checks, for either split, is a suffix
that ignores the layer's statistics altogether: a gradient exactly zero for every multiplier leaves ``(m, s)`` at
their start ``(1, 1)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.fx
from torch import nn

from advbn_aug.split import FxSplit, ModelSplit

__all__ = ["InertLayer", "batchnorms_after", "describe", "check_attach", "check_first_attack"]

_BATCH_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # normalise axis 1, the channels of (N, C, H, W)
_PASS_MODULES = (nn.Identity, nn.AdaptiveAvgPool2d)
_PASS_METHODS = frozenset({"contiguous", "clone"})
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.ELU, nn.Mish)


class InertLayer(ValueError):
    """AdvBN at this layer would leave the adversarial features as they are (the message names the fixes)."""


def _keeps_channels(gm: torch.fx.GraphModule, node: torch.fx.Node, user: torch.fx.Node) -> bool:
    """Whether ``user`` maps each channel of ``node`` by itself and commutes with a per-channel ``s * f + b``
    (``s > 0``): identity, average pooling without padding, concatenation along the channel axis."""
    if user.op == "call_module":
        mod = gm.get_submodule(str(user.target))
        if isinstance(mod, nn.AvgPool2d):
            return mod.padding in (0, (0, 0)) or not mod.count_include_pad
        return isinstance(mod, _PASS_MODULES)
    if user.op == "call_method":
        return user.target in _PASS_METHODS
    if user.op == "call_function" and user.target is torch.cat:
        dim = user.kwargs.get("dim", user.args[1] if len(user.args) > 1 else 0)
        return dim in (1, -3)
    return False


def _is_batch_norm(gm: torch.fx.GraphModule, node: torch.fx.Node, user: torch.fx.Node) -> bool:
    return (user.op == "call_module" and isinstance(gm.get_submodule(str(user.target)), _BATCH_NORMS)
            and len(user.args) >= 1 and user.args[0] is node)


def batchnorms_after(split: ModelSplit) -> tuple[str, ...]:
    """The BatchNorms that undo a batch-shared per-channel perturbation of the layer output: every use of the output
    reaches one of them through channel-keeping ops (see :func:`_keeps_channels`). ``()`` when some use does not
    (the perturbation has an effect), or when ``split`` is not the fx split (no graph to read)."""
    if not isinstance(split, FxSplit):
        return ()
    gm = split.suffix_graph(train=True)
    start = next(n for n in gm.graph.nodes if n.op == "placeholder")
    norms: dict[str, None] = {}
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if not node.users:
            return ()
        for user in node.users:
            if _is_batch_norm(gm, node, user):
                norms[str(user.target)] = None
            elif _keeps_channels(gm, node, user):
                if user not in seen:
                    seen.add(user)
                    stack.append(user)
            else:
                return ()
    order = {str(n.target): i for i, n in enumerate(gm.graph.nodes) if n.op == "call_module"}
    return tuple(sorted(norms, key=order.__getitem__))  # in the order they run


def _layer_after(split: ModelSplit, norm: str) -> str | None:
    """A layer after BatchNorm ``norm`` where AdvBN acts: the norm itself when it applies its activation (timm's
    ``BatchNormAct2d``), else the activation module it feeds, else the norm (its output is not normalised again)."""
    if not isinstance(split, FxSplit):
        return None
    gm = split.suffix_graph(train=True)
    nodes = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == norm]
    if len(nodes) != 1:
        return None
    if not isinstance(getattr(split.model.get_submodule(norm), "act", nn.Identity()), nn.Identity):
        return norm
    users = list(nodes[0].users)
    if len(users) == 1 and users[0].op == "call_module" and isinstance(
            gm.get_submodule(str(users[0].target)), _ACTIVATIONS):
        name = str(users[0].target)
        if sum(n.op == "call_module" and n.target == name for n in gm.graph.nodes) == 1:
            return name
    return norm


def describe(split: ModelSplit, norms: tuple[str, ...]) -> str:
    """Which BatchNorms undo the perturbation at ``split.layer`` (``its output goes only into ...``) and which layer
    to use instead."""
    shown = ", ".join(map(repr, norms[:3])) + (f" and {len(norms) - 3} more" if len(norms) > 3 else "")
    after = _layer_after(split, norms[-1])  # the last to run: in DenseNets it sees every channel of the block
    hint = f" e.g. AdvBN({after!r})," if after else ""
    what = f"BatchNorms {shown}, which" if len(norms) > 1 else f"BatchNorm {shown}, which"
    verb, undo, that = ("normalise", "undo", "the last of them") if len(norms) > 1 else (
        "normalises", "undoes", "that BatchNorm")
    return (f"its output goes only into {what} in the adversarial pass (train mode) {verb} with the batch's own "
            f"statistics and so {undo} the batch-shared per-channel rescaling of the mean and std. Attach after {that} "
            f"instead (at its output or its activation's),{hint} or pass stats='instance' (per-sample "
            "multipliers, which a BatchNorm does not undo)")


def _raise(split: ModelSplit, norms: tuple[str, ...], why: str) -> None:
    raise InertLayer(f"AdvBN would do nothing at layer {split.layer!r} ({why}): {describe(split, norms)}. "
                     "`advbn-aug layers MODEL` marks such layers")


def check_attach(split: ModelSplit, config: Any) -> tuple[str, ...]:
    """At attach: the BatchNorms that would undo AdvBN at ``split.layer`` with ``config``'s batch statistics (``()``
    if none do or ``stats="instance"``). Raises :class:`InertLayer` (a ``ValueError``), after closing ``split``,
    when the configured clamp cannot help (``clamp_min=None``); with ``clamp_min="auto"`` the first attack decides
    (:func:`check_first_attack`)."""
    if config.stats != "batch" or config.layout == "nhwc":
        return ()
    norms = batchnorms_after(split)
    if norms and config.clamp_min is None:
        split.close()
        _raise(split, norms, "clamp_min=None")
    return norms


def check_first_attack(split: ModelSplit, config: Any, norms: tuple[str, ...], clamp: float | None,
                       m: torch.Tensor, s: torch.Tensor, nonfinite: torch.Tensor) -> None:
    """After the first attack: raise :class:`InertLayer` if BatchNorms ``norms`` (from :func:`check_attach`) undo
    the perturbation because no clamp applies (``clamp_min="auto"`` found a signed output); else warn once
    (``RuntimeWarning``) if the attack's gradient was exactly zero everywhere, so ``(m, s)`` never left ``(1, 1)``
    (``nonfinite``: the count of non-finite gradient entries, which take no step and are warned about elsewhere).
    One host sync, on the first attack only; nothing is computed that training uses."""
    if norms and clamp is None:
        _raise(split, norms, "clamp_min='auto' found a signed output, so no ReLU clamp applies")
    if config.random_start or config.attack_loss == "kl" or not (config.eps > 0 and config.steps > 0):
        return  # the attack did not start at (1, 1), or cannot move
    if bool(((m == 1) & (s == 1)).all() & (nonfinite == 0)):
        warnings.warn(f"AdvBN at {split.layer!r}: the attack's gradient with respect to the multipliers was exactly "
                      "zero on the first batch, so (m, s) stayed at 1 and the adversarial features equal the clean "
                      "ones: the layers after it do not respond to this layer's channel statistics (e.g. the output "
                      "is cut off by a ReLU, or normalised per instance). Pick another layer (`advbn-aug layers "
                      "MODEL`)", RuntimeWarning, stacklevel=4)

