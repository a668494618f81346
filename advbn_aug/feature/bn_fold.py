"""Convolution + BatchNorm folding for the attack's eval-mode passes through the downstream layers.

The attack runs the layers after the cut in eval mode several times per training step; there each BatchNorm is a
per-channel affine map and can be folded into the convolution before it: ``bn(conv(x)) = conv'(x)`` with
``w' = w * g`` and ``b' = (b - running_mean) * g + beta``, ``g = gamma / sqrt(running_var + eps)``. The folded weights
are recomputed from the live modules on every call (one pass over the weights, small next to the convolution), so
there is no cache to go stale when the optimizer or the BatchNorm statistics change, and dual norms fold whichever
route (clean or adversarial copy) is active. Results agree with the unfolded graph to float rounding.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn

from advbn_aug.feature.dual_norm import DualNorm

__all__ = ["FoldedConvBN", "fold_conv_bn"]

_FOLDABLE: tuple[type, ...] = (nn.BatchNorm2d,)
try:
    from timm.layers import BatchNormAct2d as _BatchNormAct2d

    _FOLDABLE += (_BatchNormAct2d,)
except ImportError:  # pragma: no cover - timm is a dependency
    pass


class FoldedConvBN(nn.Module):
    """``bn(conv(x))`` computed as one convolution with folded weights when ``bn`` is a ``BatchNorm2d`` or timm
    ``BatchNormAct2d`` (or their duals) in eval mode with running statistics; otherwise exactly ``bn(conv(x))``.
    ``(N, C, H, W) -> (N, C', H', W')``.

    Holds references to the model's own ``conv`` and ``bn`` (not copies).
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        self.conv, self.bn = conv, bn

    def _norm(self) -> nn.Module:
        return self.bn.active_norm() if isinstance(self.bn, DualNorm) else self.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, conv = self._norm(), self.conv
        if self.bn.training or bn.running_var is None or _base(bn) not in _FOLDABLE:
            return self.bn(conv(x))
        g = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            g = g * bn.weight
        shift = -bn.running_mean * g if conv.bias is None else (conv.bias - bn.running_mean) * g
        if bn.bias is not None:
            shift = shift + bn.bias
        weight = conv.weight * g.reshape(-1, 1, 1, 1).to(conv.weight.dtype)
        out = conv._conv_forward(x, weight, shift.to(conv.weight.dtype))
        if _base(bn) is not nn.BatchNorm2d:  # timm BatchNormAct2d: its dropout and activation follow the norm
            out = bn.act(bn.drop(out))
        return out


def _base(m: nn.Module) -> type:
    return type(m)._base_cls if isinstance(m, DualNorm) else type(m)


def _is_bn2d(m: nn.Module) -> bool:
    return _base(m) in _FOLDABLE


def fold_conv_bn(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of ``gm`` in which each ``Conv2d`` whose output feeds only a ``BatchNorm2d`` (or its dual) is replaced
    by one :class:`FoldedConvBN` call. The copy shares every module with ``gm``; ``gm`` is unchanged. timm's
    ``BatchNormAct2d`` folds too (its dropout and activation run after the folded convolution); other norms
    (SyncBatchNorm, LayerNorm, ...) and convolutions with several users are left as they are."""
    modules = dict(gm.named_modules())
    graph = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {}
    root: dict[str, object] = {}
    fused: dict[torch.fx.Node, str] = {}  # bn node -> new module target
    skip: set[torch.fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.Conv2d) and len(node.users) == 1:
            (user,) = node.users
            bn = modules.get(user.target) if user.op == "call_module" else None
            if bn is not None and _is_bn2d(bn) and len(user.args) == 1 and not user.kwargs:
                target = f"_folded_{len(fused)}"
                root[target] = FoldedConvBN(modules[node.target], bn)
                fused[user] = target
                skip.add(node)
    for node in gm.graph.nodes:
        if node in skip:
            continue
        if node in fused:
            conv_node = node.args[0]
            env[node] = graph.call_module(fused[node], (env[conv_node.args[0]],) + tuple(
                torch.fx.map_arg(a, lambda n: env[n]) for a in conv_node.args[1:]))
            continue
        env[node] = graph.node_copy(node, lambda n: env[n])
        if node.op in ("call_module", "get_attr"):
            root[node.target] = _get(gm, node.target)
    return torch.fx.GraphModule(root, graph, class_name="FoldedSuffix")


def _get(gm: nn.Module, target: str) -> object:
    obj: object = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
