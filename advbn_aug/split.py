"""Split a model at one named layer into a prefix (input -> layer output) and a suffix (layer output -> output).

Two ways to run the suffix on a substituted feature:

* ``"fx"``: the model is traced with ``torch.fx`` (with timm's leaf modules and functions) and the nodes downstream of
  the layer become a ``GraphModule`` that takes the feature as its only input. Traced twice (train and eval) because
  ``self.training`` branches are baked into a graph. Submodules are shared with the model, not copied.
* ``"hook"``: the whole model runs with the layer's forward replaced by one that returns the feature; what runs
  before the layer does so under ``no_grad``. Works for any model; costs a forward of the modules before the layer
  (not the layer itself) per call.

This module knows nothing about AdvBN.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.fx
from torch import nn

__all__ = ["resolve_layer", "layer_candidates", "ModelSplit", "split_model", "SplitMode"]

SplitMode = Literal["auto", "fx", "hook"]


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


_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


class _SplitTracer(torch.fx.Tracer):
    """fx tracer that keeps ``layer``, norm layers and timm's no-trace modules as leaves."""

    def __init__(self, layer: str):
        leaf_types: tuple[type, ...] = ()
        autowrap: tuple = ()
        try:
            from timm.layers import _fx as timm_fx

            leaf_types = tuple(timm_fx.get_notrace_modules())
            autowrap = tuple(f for f in timm_fx.get_notrace_functions() if callable(f))
        except ImportError:  # pragma: no cover - timm is a dependency
            pass
        super().__init__(autowrap_functions=autowrap)
        self.layer = layer
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname == self.layer or isinstance(m, _NORM_TYPES):  # norms stay swappable modules
            return True
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, qualname)


class _NotSplittable(Exception):
    pass


@contextmanager
def _modes(modules: dict[nn.Module, bool]) -> Iterator[None]:
    """Set ``module.training`` per the dict, restoring the previous flags afterwards."""
    saved = {m: m.training for m in modules}
    try:
        for m, flag in modules.items():
            m.training = flag
        yield
    finally:
        for m, flag in saved.items():
            m.training = flag


def _with_descendants(mods: list[nn.Module]) -> list[nn.Module]:
    out: dict[int, nn.Module] = {}
    for m in mods:
        for sub in m.modules():
            out.setdefault(id(sub), sub)
    return list(out.values())


def _trace_suffix(model: nn.Module, layer: str, train: bool) -> tuple[torch.fx.GraphModule, list[str], list[str]]:
    """Trace ``model`` in train or eval mode; return the suffix GraphModule and the module names / attribute targets
    that the prefix uses."""
    all_modules = list(model.modules())
    with _modes({m: train for m in all_modules}):
        try:
            graph = _SplitTracer(layer).trace(model)
        except Exception as err:  # untraceable python control flow, unsupported ops, ...
            raise _NotSplittable(f"torch.fx could not trace the model: {type(err).__name__}: {err}") from err
    layer_nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    if len(layer_nodes) != 1:
        raise _NotSplittable(f"layer {layer!r} is called {len(layer_nodes)} times in the traced graph, need 1")
    layer_node = layer_nodes[0]

    ancestors: set[torch.fx.Node] = set()
    stack = list(layer_node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n not in ancestors:
            ancestors.add(n)
            stack.extend(n.all_input_nodes)

    needed: set[torch.fx.Node] = set()
    outputs = [n for n in graph.nodes if n.op == "output"]
    stack = list(outputs)
    while stack:
        n = stack.pop()
        if n in needed or n is layer_node:
            continue
        needed.add(n)
        stack.extend(n.all_input_nodes)
    if layer_node not in {i for n in needed for i in n.all_input_nodes}:
        raise _NotSplittable(f"the output does not depend on layer {layer!r}")

    new = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {layer_node: new.placeholder("feature")}
    for n in graph.nodes:
        if n not in needed:
            continue
        if n.op == "placeholder" and not n.args:  # a required model input: a skip around the layer
            raise _NotSplittable(f"the part after the layer also reads the model input {n.target!r}")
        env[n] = new.node_copy(n, lambda a: env[a])
    new.lint()
    suffix = torch.fx.GraphModule(model, new, class_name=f"Suffix_{layer.replace('.', '_')}")
    prefix_targets = [str(n.target) for n in ancestors if n.op in ("call_module", "get_attr")]
    suffix_targets = [str(n.target) for n in needed if n.op == "call_module"]
    return suffix, prefix_targets, suffix_targets


def _get(model: nn.Module, target: str) -> Any:
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class ModelSplit:
    """A model cut at ``layer``. ``prefix_modules`` compute the layer output (the layer and its submodules
    included); ``suffix_modules`` run after it; ``prefix_params`` are the parameters the prefix reads."""

    model: nn.Module
    layer: str
    mode: Literal["fx", "hook"]
    prefix_modules: list[nn.Module]
    suffix_modules: list[nn.Module]
    prefix_params: list[nn.Parameter]
    reason: str = ""
    _graphs: dict[bool, torch.fx.GraphModule] = field(default_factory=dict, repr=False)

    @property
    def layer_module(self) -> nn.Module:
        return self.model.get_submodule(self.layer)

    def run_suffix(self, feature: torch.Tensor, *, train: bool,
                   inputs: tuple[tuple, dict] | None = None) -> Any:
        """Output of the model with the layer's output replaced by ``feature``.

        Suffix modules run in train or eval mode per ``train`` (restored afterwards); prefix modules in eval.
        The ``"hook"`` mode needs the original model ``inputs`` as ``(args, kwargs)``.
        """
        if self.mode == "fx":
            with _modes({m: train for m in self.suffix_modules}):
                return self._graphs[train](feature)
        if inputs is None:
            raise RuntimeError("the hook-substitution split needs the model inputs of the forward that produced the "
                               "feature; run the model in train mode first")
        args, kwargs = inputs
        modes = {m: train for m in self.model.modules()}
        modes.update({m: False for m in self.prefix_modules})
        grad_was = torch.is_grad_enabled()

        def substitute(*_: Any, **__: Any) -> torch.Tensor:
            torch.set_grad_enabled(grad_was)  # the prefix ran without autograd; the suffix needs it
            return feature

        layer = self.layer_module
        layer.forward = substitute  # skips the layer's own compute; only modules before it still run
        try:
            with _modes(modes), torch.no_grad():
                return self.model(*args, **kwargs)
        finally:
            del layer.forward


def _split_by_registration(model: nn.Module, layer: str, reason: str) -> ModelSplit:
    """Prefix/suffix by module registration order (the ``"hook"`` mode's best guess without a graph)."""
    named = list(model.named_modules())
    layer_module = model.get_submodule(layer)
    inside = {id(m) for m in layer_module.modules()}
    ancestors = {id(model.get_submodule(".".join(layer.split(".")[:i]))) for i in range(len(layer.split(".")))}
    idx = next(i for i, (n, _) in enumerate(named) if n == layer)
    prefix, suffix = [], []
    for i, (_, m) in enumerate(named):
        if id(m) in ancestors:
            continue
        if id(m) in inside or i < idx:
            prefix.append(m)
        elif i > idx:
            suffix.append(m)
    params = {id(p): p for m in prefix for p in m.parameters(recurse=False)}
    return ModelSplit(model, layer, "hook", prefix, suffix, list(params.values()), reason)


def split_model(model: nn.Module, layer: str | int, mode: SplitMode = "auto") -> ModelSplit:
    """Split ``model`` at ``layer`` (see :func:`resolve_layer`).

    ``mode="auto"`` tries ``torch.fx`` and falls back to hook substitution (``ModelSplit.reason`` says why);
    ``"fx"`` raises if the model does not trace; ``"hook"`` never traces.
    """
    if mode not in ("auto", "fx", "hook"):
        raise ValueError(f"split mode must be 'auto', 'fx' or 'hook', got {mode!r}")
    name = resolve_layer(model, layer)
    if mode == "hook":
        return _split_by_registration(model, name, "hook mode requested")
    try:
        graphs = {}
        for train in (True, False):
            graphs[train], prefix_t, suffix_t = _trace_suffix(model, name, train)
            if train:
                prefix_targets, suffix_targets = prefix_t, suffix_t
    except _NotSplittable as err:
        if mode == "fx":
            raise ValueError(f"cannot split the model at {name!r} with torch.fx: {err}. Use mode='hook'.") from err
        return _split_by_registration(model, name, str(err))
    prefix_objs = [_get(model, t) for t in prefix_targets] + [model.get_submodule(name)]
    prefix_modules = _with_descendants([o for o in prefix_objs if isinstance(o, nn.Module)])
    params: dict[int, nn.Parameter] = {}
    for o in prefix_objs:
        if isinstance(o, nn.Parameter):
            params[id(o)] = o
    for m in prefix_modules:
        for p in m.parameters(recurse=False):
            params[id(p)] = p
    suffix_modules = _with_descendants([model.get_submodule(t) for t in suffix_targets])
    suffix_modules += [g for g in graphs.values()]
    return ModelSplit(model, name, "fx", prefix_modules, suffix_modules, list(params.values()), "", graphs)
