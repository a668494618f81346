"""Split by a ``torch.fx`` trace (:class:`FxSplit`): the nodes after the layer become a ``GraphModule`` that takes
the feature as its only input, traced once per train/eval mode, sharing the model's submodules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx
from torch import nn

from advbn_aug.split.base import ModelSplit, direct_parameters, training_modes
from advbn_aug.split.layers import resolve_layer

__all__ = ["FxSplit", "FxSplitError"]


_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def _with_descendants(mods: list[nn.Module]) -> list[nn.Module]:
    """``mods`` and all their submodules, each module once, in first-seen order."""
    out: dict[int, nn.Module] = {}
    for m in mods:
        for sub in m.modules():
            out.setdefault(id(sub), sub)
    return list(out.values())


def _get(model: nn.Module, target: str) -> Any:
    """The attribute of ``model`` at the dotted fx ``target`` (a submodule, parameter, buffer or plain attribute)."""
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class _SplitTracer(torch.fx.Tracer):
    """fx tracer that keeps ``layer``, norm layers and timm's no-trace modules as leaves."""

    def __init__(self, layer: str, leaves: Sequence[str] = ()):
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
        self.leaves = frozenset(leaves)
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname == self.layer or qualname in self.leaves or isinstance(m, _NORM_TYPES):  # norms stay swappable
            return True
        if self.leaf_types and isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, qualname)


class FxSplitError(ValueError):
    """torch.fx cannot split the model (raised by :class:`FxSplit`); ``why`` says why (the message adds the fix)."""

    def __init__(self, layer: str, why: str):
        super().__init__(f"cannot split the model at {layer!r} with torch.fx: {why}. Use mode='hook'.")
        self.why = why


def _trace_suffix(model: nn.Module, layer: str, train: bool, leaves: Sequence[str] = ()
                  ) -> tuple[torch.fx.GraphModule, list[str], list[str]]:
    """Trace ``model`` in train or eval mode; return the suffix GraphModule and the module names / attribute targets
    that the prefix uses."""
    all_modules = list(model.modules())
    with training_modes({m: train for m in all_modules}):
        try:
            graph = _SplitTracer(layer, leaves).trace(model)
        except Exception as err:  # untraceable python control flow, unsupported ops, ...
            raise FxSplitError(layer, f"torch.fx could not trace the model: {type(err).__name__}: {err}") from err
    layer_nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    if len(layer_nodes) != 1:
        raise FxSplitError(layer, f"layer {layer!r} is called {len(layer_nodes)} times in the traced graph, need 1")
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
        raise FxSplitError(layer, f"the output does not depend on layer {layer!r}")

    new = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {layer_node: new.placeholder("feature")}
    for n in graph.nodes:
        if n not in needed:
            continue
        if n.op == "placeholder" and not n.args:  # a required model input: a skip around the layer
            raise FxSplitError(layer, f"the part after the layer also reads the model input {n.target!r}")
        env[n] = new.node_copy(n, lambda a: env[a])
    new.lint()
    suffix = torch.fx.GraphModule(model, new, class_name=f"Suffix_{layer.replace('.', '_')}")
    prefix_targets = [str(n.target) for n in ancestors if n.op in ("call_module", "get_attr")]
    suffix_targets = [str(n.target) for n in needed if n.op == "call_module"]
    return suffix, prefix_targets, suffix_targets


class FxSplit(ModelSplit):
    """Split by a ``torch.fx`` trace: the suffix is a ``GraphModule`` (train and eval variants) sharing the model's
    submodules. Raises ``ValueError`` if the model does not trace or the layer does not cut it in two."""

    mode = "fx"

    def __init__(self, model: nn.Module, layer: str | int, leaves: Sequence[str] = ()):
        name = resolve_layer(model, layer)
        graphs = {}
        for train in (True, False):
            graphs[train], prefix_t, suffix_t = _trace_suffix(model, name, train, leaves)
            if train:
                prefix_targets, suffix_targets = prefix_t, suffix_t
        prefix_objs = [_get(model, t) for t in prefix_targets] + [model.get_submodule(name)]
        prefix = _with_descendants([o for o in prefix_objs if isinstance(o, nn.Module)])
        suffix = _with_descendants([model.get_submodule(t) for t in suffix_targets]) + list(graphs.values())
        params = direct_parameters(prefix, [o for o in prefix_objs if isinstance(o, nn.Parameter)])
        super().__init__(model, name, prefix, suffix, params)
        self._graphs: dict[bool, torch.fx.GraphModule] = graphs

    def suffix_graph(self, train: bool = True) -> torch.fx.GraphModule:
        """The traced suffix ``feature -> output`` of train or eval mode (shares the model's submodules; read it,
        do not edit it)."""
        return self._graphs[train]

    def run_suffix(self, feature: torch.Tensor, *, train: bool, inputs: tuple[tuple, dict] | None = None) -> Any:
        with training_modes({m: train for m in self.suffix_modules}):
            return self._graphs[train](feature)

    def eval_suffix(self, transform: Callable[[torch.fx.GraphModule], nn.Module]) -> Callable[[torch.Tensor], Any]:
        """``feature -> output`` through ``transform(eval-mode suffix graph)``, built once, run with the suffix
        modules in eval mode like :meth:`run_suffix` (e.g. a graph with convolution + BatchNorm pairs folded)."""
        module = transform(self._graphs[False])
        suffix = {m: False for m in self.suffix_modules}

        def run(feature: torch.Tensor) -> Any:
            with training_modes(suffix):
                return module(feature)
        return run
