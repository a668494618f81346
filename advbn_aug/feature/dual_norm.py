"""Dual (clean / adversarial) normalisation layers, converted in place and folded back.

AdvBN trains the layers downstream of the attacked one on clean and on adversarial features; as in AdvProp, each
BatchNorm there gets an auxiliary copy for adversarial features (``aux_bn``), initialised from the clean one. The
conversion swaps the module's class in place (identity, parameters and optimizer references survive) to a subclass
that routes by its ``route`` attribute; the clean path keeps its checkpoint keys, the copy adds ``<name>.aux_bn.*``.
:func:`fold_dual_norm` deletes the copies and restores the original classes.

BatchNorm-family layers (``nn.BatchNorm1d/2d/3d``, ``nn.SyncBatchNorm``, timm's ``BatchNormAct2d`` with its activation
and drop) are converted by default. LayerNorm/GroupNorm hold no running statistics, so they are shared by default;
they can be duplicated too (``layer_norm=True``), which gives the adversarial path its own affine parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["DualNorm", "convert_dual_norm", "fold_dual_norm", "routed", "is_dual_norm", "Route", "select_bn_state",
           "DualBatchNorm2d", "DualSyncBatchNorm", "DualLayerNorm", "DualGroupNorm"]

Route = Literal["clean", "adv"]


class DualNorm:
    """Mixin for a norm layer with an auxiliary copy ``aux_bn`` used while ``route == "adv"``.

    ``(*) -> (*)``, exactly the wrapped class's forward on the clean route.
    """

    _base_cls: type[nn.Module]
    aux_bn: nn.Module
    route: str

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.route == "adv":
            self.aux_bn.training = self.training  # mode switches may have missed the copy
            return self.aux_bn(x)
        return super().forward(x)  # type: ignore[misc]

    def active_norm(self) -> nn.Module:
        """The norm module the current route runs: ``aux_bn`` on ``"adv"``, this module itself on ``"clean"``."""
        return self.aux_bn if self.route == "adv" else self  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", route={self.route}"  # type: ignore[misc]


_DUAL_CLASSES: dict[type, type] = {}


def _register(base: type[nn.Module], name: str | None = None) -> type:
    cls = type(name or f"Dual{base.__name__}", (DualNorm, base), {"_base_cls": base, "__module__": __name__})
    _DUAL_CLASSES[base] = cls
    globals().setdefault(cls.__name__, cls)  # picklable by qualified name
    try:  # timm's fx feature extraction keeps these as leaves
        from timm.layers import register_notrace_module

        register_notrace_module(cls)
    except ImportError:  # pragma: no cover
        pass
    return cls


DualBatchNorm2d = _register(nn.BatchNorm2d)
DualBatchNorm1d = _register(nn.BatchNorm1d)
DualSyncBatchNorm = _register(nn.SyncBatchNorm)
DualLayerNorm = _register(nn.LayerNorm)
DualGroupNorm = _register(nn.GroupNorm)
try:
    from timm.layers import BatchNormAct2d as _BatchNormAct2d
    from timm.layers import SyncBatchNormAct as _SyncBatchNormAct

    _register(_BatchNormAct2d)
    _register(_SyncBatchNormAct)
except ImportError:  # pragma: no cover - timm is a dependency
    pass


def _dual_class(base: type[nn.Module]) -> type:
    return _DUAL_CLASSES.get(base) or _register(base)


def is_dual_norm(module: nn.Module) -> bool:
    """Whether ``module`` has been converted by :func:`convert_dual_norm`."""
    return isinstance(module, DualNorm)


def _wanted(module: nn.Module, batch_norm: bool, layer_norm: bool) -> bool:
    if isinstance(module, DualNorm):
        return False
    if batch_norm and isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    return layer_norm and isinstance(module, (nn.LayerNorm, nn.GroupNorm))


def convert_dual_norm(modules: Iterable[nn.Module], *, batch_norm: bool = True,
                      layer_norm: bool = False) -> list[nn.Module]:
    """Give each BatchNorm (and, with ``layer_norm``, each LayerNorm/GroupNorm) in ``modules`` an adversarial copy,
    in place. Only the modules passed are converted (not their children). Returns the converted modules."""
    converted = []
    for m in modules:
        if not _wanted(m, batch_norm, layer_norm):
            continue
        aux = copy.deepcopy(m)
        m.__class__ = _dual_class(type(m))
        m.aux_bn = aux
        m.route = "clean"
        # plain torch.fx tracers keep torch.nn modules as leaves by their __module__: keep that answer
        object.__setattr__(m, "__module__", type(m)._base_cls.__module__)
        converted.append(m)
    return converted


def fold_dual_norm(modules: Iterable[nn.Module], keep: Route = "clean") -> list[nn.Module]:
    """Undo :func:`convert_dual_norm` in place: restore the original classes, keeping the ``"clean"`` norms (the
    adversarial copies are dropped) or the ``"adv"`` copies (their parameters and running statistics become the
    module's). Either way the module classes and ``state_dict`` keys are the original ones."""
    if keep not in ("clean", "adv"):
        raise ValueError(f"keep must be 'clean' or 'adv', got {keep!r}")
    folded = []
    for m in modules:
        if isinstance(m, DualNorm):
            aux = m.aux_bn
            del m.aux_bn
            del m.route
            m.__dict__.pop("__module__", None)
            m.__class__ = type(m)._base_cls
            if keep == "adv":
                m.load_state_dict(aux.state_dict())
            folded.append(m)
    return folded


def select_bn_state(state_dict: Mapping[str, Any], route: Route) -> dict[str, Any]:
    """A plain ``state_dict`` from one saved with dual norms (``<name>.aux_bn.*`` keys): the clean norms
    (``route="clean"``, the aux keys dropped) or the adversarial copies in the clean norms' places (``"adv"``).

    Raises ``ValueError`` for ``"adv"`` when the state holds no ``aux_bn`` keys.
    """
    if route not in ("clean", "adv"):
        raise ValueError(f"route must be 'clean' or 'adv', got {route!r}")
    marker = "aux_bn."
    plain = {k: v for k, v in state_dict.items() if not (k.startswith(marker) or f".{marker}" in k)}
    if route == "clean":
        return plain
    aux = {k: v for k, v in state_dict.items() if k not in plain}
    if not aux:
        raise ValueError("the checkpoint holds no adversarial BatchNorm state ('*.aux_bn.*' keys): it was saved "
                         "after detach() or without dual_bn; evaluate it with the clean route (--bn clean), or save "
                         "model.state_dict() while AdvBN is attached")
    for k, v in aux.items():
        head, _, tail = k.rpartition(marker)
        plain[head + tail] = v
    return plain


@contextmanager
def routed(modules: nn.Module | Iterable[nn.Module], route: Route) -> Iterator[None]:
    """Route the dual norms in ``modules`` (a model: all of its dual norms) to ``"clean"`` or ``"adv"`` inside the
    block, restoring afterwards: ``with routed(model, "adv"): logits = model(x)``."""
    if route not in ("clean", "adv"):
        raise ValueError(f"route must be 'clean' or 'adv', got {route!r}")
    if isinstance(modules, nn.Module):
        modules = modules.modules()
    duals = [m for m in modules if isinstance(m, DualNorm)]
    saved = [m.route for m in duals]
    try:
        for m in duals:
            m.route = route
        yield
    finally:
        for m, r in zip(duals, saved):
            m.route = r
