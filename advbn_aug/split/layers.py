"""Which module a user means by a layer name or a timm ``feature_info`` index."""

from __future__ import annotations

import difflib

from torch import nn

__all__ = ["layer_candidates", "resolve_layer"]


def _feature_info_modules(model: nn.Module) -> list[str]:
    info = getattr(model, "feature_info", None)
    if info is None:
        return []
    if hasattr(info, "module_name"):  # timm FeatureInfo (features_only models)
        return [info.module_name(i) for i in range(len(info))]
    try:
        return [str(d["module"]) for d in info if isinstance(d, dict) and "module" in d]
    except TypeError:
        return []


def layer_candidates(model: nn.Module, depth: int = 2) -> list[str]:
    """Module names a user is likely to mean: ``feature_info`` names, then named modules up to ``depth`` dots."""
    names = _feature_info_modules(model)
    for name, _ in model.named_modules():
        if name and name.count(".") < depth and name not in names:
            names.append(name)
    return names


def resolve_layer(model: nn.Module, layer: str | int) -> str:
    """Dotted module name for ``layer``: a module name (``layer1``, ``stages.0``, ``blocks.5``) or, for timm models,
    an index into ``model.feature_info``. Raises ``ValueError`` listing the valid candidates."""
    modules = dict(model.named_modules())
    info = _feature_info_modules(model)
    if isinstance(layer, str) and layer in modules and layer != "":
        return layer
    index: int | None = None
    if isinstance(layer, int) and not isinstance(layer, bool):
        index = layer
    elif isinstance(layer, str) and layer.lstrip("-").isdigit():
        index = int(layer)
    if index is not None and info:
        if -len(info) <= index < len(info):
            return info[index]
        raise ValueError(f"feature_info index {index} is out of range: this model has {len(info)} feature levels "
                         f"({', '.join(info)}); pass an index in 0..{len(info) - 1} or a module name")
    cands = layer_candidates(model)
    close = difflib.get_close_matches(str(layer), list(modules), n=5, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(cands[:40]) + (", ..." if len(cands) > 40 else "")
    raise ValueError(f"layer {layer!r} is not a module of {type(model).__name__}.{hint} "
                     f"Pass a dotted module name (see model.named_modules()) such as: {shown}")
