"""Split a model at one named layer into a prefix (input -> layer output) and a suffix (layer output -> output).

Two ways to run the suffix on a substituted feature, behind one interface (:class:`ModelSplit`):

* :class:`FxSplit` (``"fx"``): the model is traced with ``torch.fx`` (with timm's leaf modules and functions) and the
  nodes downstream of the layer become a ``GraphModule`` that takes the feature as its only input. Traced twice (train
  and eval) because ``self.training`` branches are baked into a graph. Submodules are shared with the model.
* :class:`HookSplit` (``"hook"``): the whole model runs with the layer's forward replaced by one that returns the
  feature; what runs before the layer does so under ``no_grad``. Works for any model; costs a forward of the modules
  before the layer per call. Prefix and suffix come from the order in which modules run: recorded from
  ``example_inputs`` at split time, or guessed from registration order and checked on the first training forward.

Both record the model's modules at split time: :meth:`ModelSplit.verify` raises if they were replaced, added or
removed since. Nothing here imports AdvBN; error messages name its fixes.
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
import torch.fx
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

__all__ = ["resolve_layer", "layer_candidates", "ModelSplit", "FxSplit", "HookSplit", "split_model", "SplitMode",
           "SplitFallbackWarning"]

SplitMode = Literal["auto", "fx", "hook"]
_RESPLIT = ("split again after the change (with AdvBN: adv.detach(); attach again after the change and rebuild the "
            "optimizer)")


class SplitFallbackWarning(UserWarning):
    """``split_model(mode="auto")`` could not use torch.fx and fell back to the hook split."""


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


class _NotSplittable(ValueError):
    """torch.fx cannot split the model; ``why`` says why (the message adds the fix)."""

    def __init__(self, layer: str, why: str):
        super().__init__(f"cannot split the model at {layer!r} with torch.fx: {why}. Use mode='hook'.")
        self.why = why


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


def _trace_suffix(model: nn.Module, layer: str, train: bool, leaves: Sequence[str] = ()
                  ) -> tuple[torch.fx.GraphModule, list[str], list[str]]:
    """Trace ``model`` in train or eval mode; return the suffix GraphModule and the module names / attribute targets
    that the prefix uses."""
    all_modules = list(model.modules())
    with _modes({m: train for m in all_modules}):
        try:
            graph = _SplitTracer(layer, leaves).trace(model)
        except Exception as err:  # untraceable python control flow, unsupported ops, ...
            raise _NotSplittable(layer, f"torch.fx could not trace the model: {type(err).__name__}: {err}") from err
    layer_nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    if len(layer_nodes) != 1:
        raise _NotSplittable(layer, f"layer {layer!r} is called {len(layer_nodes)} times in the traced graph, need 1")
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
        raise _NotSplittable(layer, f"the output does not depend on layer {layer!r}")

    new = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {layer_node: new.placeholder("feature")}
    for n in graph.nodes:
        if n not in needed:
            continue
        if n.op == "placeholder" and not n.args:  # a required model input: a skip around the layer
            raise _NotSplittable(layer, f"the part after the layer also reads the model input {n.target!r}")
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


def _params_of(modules: Sequence[nn.Module], extra: Sequence[nn.Parameter] = ()) -> list[nn.Parameter]:
    params = {id(p): p for p in extra}
    for m in modules:
        for p in m.parameters(recurse=False):
            params.setdefault(id(p), p)
    return list(params.values())


def _names(names: Sequence[str], limit: int = 6) -> str:
    return ", ".join(map(repr, names[:limit])) + (f" and {len(names) - limit} more" if len(names) > limit else "")


class ModelSplit(ABC):
    """A model cut at ``layer``. ``prefix_modules`` compute the layer output (the layer and its submodules
    included); ``suffix_modules`` run after it; ``prefix_params`` are the parameters the prefix reads.

    The split records the model's modules: :meth:`verify` raises if they changed since (:meth:`refresh` accepts an
    intended change); :meth:`close` removes any hook the split installed on the model.
    """

    mode: ClassVar[Literal["fx", "hook"]]

    def __init__(self, model: nn.Module, layer: str, prefix_modules: list[nn.Module],
                 suffix_modules: list[nn.Module], prefix_params: list[nn.Parameter], reason: str = ""):
        self.model, self.layer, self.reason = model, layer, reason
        self.prefix_modules, self.suffix_modules, self.prefix_params = prefix_modules, suffix_modules, prefix_params
        self.execution_order: list[str] | None = None  # module names in first-call order, when recorded
        self.refresh()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({type(self.model).__name__} at {self.layer!r}: "
                f"{len(self.prefix_modules)} prefix / {len(self.suffix_modules)} suffix modules)")

    @property
    def layer_module(self) -> nn.Module:
        return self.model.get_submodule(self.layer)

    @abstractmethod
    def run_suffix(self, feature: torch.Tensor, *, train: bool, inputs: tuple[tuple, dict] | None = None) -> Any:
        """Output of the model with the layer's output replaced by ``feature``.

        Suffix modules run in train or eval mode per ``train`` (restored afterwards); prefix modules in eval.
        The hook split needs the original model ``inputs`` as ``(args, kwargs)``.
        """

    def refresh(self) -> None:
        """Record the model's current modules (name, object, class) as the ones the split was made for; call it
        after changing them in place on purpose (e.g. a class swap of suffix norms)."""
        self._snapshot = {name: (m, type(m)) for name, m in self.model.named_modules()}

    def verify(self) -> None:
        """Raise ``RuntimeError`` if a submodule of the model was replaced, added, removed or changed class since the
        split (or :meth:`refresh`). One walk over ``named_modules``; no forward."""
        now = dict(self.model.named_modules())
        snap = self._snapshot
        if len(now) == len(snap) and all(now.get(n) is m and type(m) is c for n, (m, c) in snap.items()):
            return
        changes = []
        for name, (old, cls) in snap.items():
            new = now.get(name)
            if new is None:
                changes.append(f"{name!r} removed")
            elif new is not old or type(new) is not cls:
                how = "replaced" if new is not old else "changed class"
                changes.append(f"{name!r} {how} ({cls.__name__} -> {type(new).__name__})")
        changes += [f"{name!r} added ({type(m).__name__})" for name, m in now.items() if name not in snap]
        more = f" and {len(changes) - 8} more" if len(changes) > 8 else ""
        raise RuntimeError(f"{type(self.model).__name__} changed after it was split at {self.layer!r}: submodule "
                           f"{', '.join(changes[:8])}{more}. The split still runs the modules it was made with; "
                           f"{_RESPLIT}")

    def close(self) -> None:
        """Remove every hook the split installed on the model (idempotent)."""
        return None


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
        params = _params_of(prefix, [o for o in prefix_objs if isinstance(o, nn.Parameter)])
        super().__init__(model, name, prefix, suffix, params)
        self._graphs: dict[bool, torch.fx.GraphModule] = graphs

    def run_suffix(self, feature: torch.Tensor, *, train: bool, inputs: tuple[tuple, dict] | None = None) -> Any:
        with _modes({m: train for m in self.suffix_modules}):
            return self._graphs[train](feature)

    def eval_suffix(self, transform: Callable[[torch.fx.GraphModule], nn.Module]) -> Callable[[torch.Tensor], Any]:
        """``feature -> output`` through ``transform(eval-mode suffix graph)``, built once, run with the suffix
        modules in eval mode like :meth:`run_suffix` (e.g. a graph with convolution + BatchNorm pairs folded)."""
        module = transform(self._graphs[False])
        suffix = {m: False for m in self.suffix_modules}

        def run(feature: torch.Tensor) -> Any:
            with _modes(suffix):
                return module(feature)
        return run


class _Recorder:
    """Temporary hooks on every submodule of ``model`` logging ``(started, module)`` per call, in order."""

    def __init__(self, model: nn.Module):
        self.events: list[tuple[bool, nn.Module]] = []
        self.handles = []
        for m in model.modules():
            if m is not model:
                self.handles += [m.register_forward_pre_hook(self._start, prepend=True),
                                 m.register_forward_hook(self._end)]

    def _start(self, module: nn.Module, args: Any) -> None:
        self.events.append((True, module))

    def _end(self, module: nn.Module, args: Any, output: Any) -> None:
        self.events.append((False, module))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


Named = list[tuple[str, nn.Module]]


def _split_by_record(model: nn.Module, layer: str, events: list[tuple[bool, nn.Module]]
                     ) -> tuple[Named, Named, list[str]]:
    """Prefix and suffix ``(name, module)`` pairs from a recorded forward, and the module names in first-call order.

    Prefix: modules that ran before the layer finished (with the layer's submodules); suffix: modules that ran after
    it; neither: modules enclosing the layer's call, modules that never ran, and stateless modules (no parameters or
    buffers) that ran on both sides. Raises ``RuntimeError`` if the layer did not run exactly once or a module with
    parameters or buffers ran on both sides."""
    named = list(model.named_modules())
    name_of = {id(m): n for n, m in named}
    target = model.get_submodule(layer)
    what = f"layer {layer!r} of {type(model).__name__}"
    calls = [i for i, (started, m) in enumerate(events) if started and m is target]
    if not calls:
        raise RuntimeError(f"{what} did not run in a forward of the model: pick a layer on the path from the input "
                           "to the output")
    if len(calls) > 1:
        raise RuntimeError(f"{what} ran {len(calls)} times in one forward; AdvBN needs a layer that runs once: pick "
                           "its container or a later stage")
    begin = calls[0]
    end = next((i for i in range(begin, len(events)) if not events[i][0] and events[i][1] is target), len(events))
    stack: list[int] = []  # the calls in progress when the layer starts enclose it
    for started, m in events[:begin]:
        if started:
            stack.append(id(m))
        elif id(m) in stack:  # pop up to its own call (calls whose end was skipped by a caught error, too)
            del stack[len(stack) - 1 - stack[::-1].index(id(m)):]
    parts = layer.split(".")
    skip = set(stack) | {id(model.get_submodule(".".join(parts[:i]))) for i in range(len(parts))}
    before, after = {id(m) for m in target.modules()}, set()
    for i, (started, m) in enumerate(events):
        if started and id(m) not in skip:
            (before if i < end else after).add(id(m))
    both = [(n, m) for n, m in named if id(m) in before and id(m) in after]
    stateful = [n for n, m in both if next(m.parameters(), None) is not None or next(m.buffers(), None) is not None]
    if stateful:
        raise RuntimeError(f"module(s) {_names(stateful)} ran both before and after {what} (one instance with "
                           "parameters or buffers used on both sides of the cut), so the split cannot freeze or "
                           "convert them on one side only: give each use its own module instance or pick another layer")
    before -= {id(m) for _, m in both}  # stateless and shared (torchvision's BasicBlock.relu): on neither side
    after -= {id(m) for _, m in both}
    order = list(dict.fromkeys(name_of.get(id(m), "?") for started, m in events if started))
    return ([(n, m) for n, m in named if id(m) in before], [(n, m) for n, m in named if id(m) in after], order)


def _split_by_registration(model: nn.Module, layer: str) -> tuple[list[nn.Module], list[nn.Module]]:
    """Prefix/suffix by module registration order (the hook split's guess before any forward)."""
    named = list(model.named_modules())
    inside = {id(m) for m in model.get_submodule(layer).modules()}
    parts = layer.split(".")
    ancestors = {id(model.get_submodule(".".join(parts[:i]))) for i in range(len(parts))}
    idx = next(i for i, (n, _) in enumerate(named) if n == layer)
    prefix, suffix = [], []
    for i, (_, m) in enumerate(named):
        if id(m) in ancestors:
            continue
        if id(m) in inside or i < idx:
            prefix.append(m)
        elif i > idx:
            suffix.append(m)
    return prefix, suffix


class HookSplit(ModelSplit):
    """Split by hook substitution: the suffix is the whole model run with the layer's forward replaced by one that
    returns the feature, the modules before the layer under ``no_grad``.

    With ``example_inputs`` (and/or ``example_kwargs``), one no-grad eval forward at construction records the order
    in which modules run, and prefix/suffix follow it. Without, they follow registration order and the first
    train-mode forward records the real order: :meth:`verify` then raises if they disagree, and that forward raises
    if the layer runs more than once or a module with parameters or buffers runs on both sides of it.
    """

    mode = "hook"

    def __init__(self, model: nn.Module, layer: str | int, reason: str = "hook mode requested", *,
                 example_inputs: tuple | torch.Tensor | None = None, example_kwargs: dict | None = None):
        name = resolve_layer(model, layer)
        if isinstance(example_inputs, torch.Tensor):
            example_inputs = (example_inputs,)
        self._handles: list[Any] = []
        self._recorder: _Recorder | None = None
        self._in_suffix = False
        self._problem: str | None = None
        if example_inputs is None and example_kwargs is None:
            prefix, suffix = _split_by_registration(model, name)
            super().__init__(model, name, prefix, suffix, _params_of(prefix), reason)
            self._handles = [model.register_forward_pre_hook(self._start_recording, prepend=True),
                             model.register_forward_hook(self._finish_recording)]
            return
        recorder = _Recorder(model)
        try:
            with torch.no_grad(), _modes({m: False for m in model.modules()}):
                model(*(example_inputs or ()), **(example_kwargs or {}))
        finally:
            recorder.remove()
        named_prefix, named_suffix, order = _split_by_record(model, name, recorder.events)
        prefix = [m for _, m in named_prefix]
        super().__init__(model, name, prefix, [m for _, m in named_suffix], _params_of(prefix), reason)
        self.execution_order = order

    def _start_recording(self, module: nn.Module, args: Any) -> None:
        if self._recorder is not None:  # left behind by a forward that raised: start over
            self._recorder.remove()
            self._recorder = None
        if (module.training and not self._in_suffix and not is_fx_symbolic_tracing()
                and not torch.compiler.is_compiling()):
            self._recorder = _Recorder(module)

    def _finish_recording(self, module: nn.Module, args: Any, output: Any) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        recorder.remove()
        self.close()  # recorded once: later forwards pay nothing
        try:
            named_prefix, named_suffix, self.execution_order = _split_by_record(module, self.layer, recorder.events)
        except RuntimeError as err:
            self._problem = str(err)
            raise
        in_prefix, in_suffix = {id(m) for m in self.prefix_modules}, {id(m) for m in self.suffix_modules}
        late = [n for n, m in named_suffix if id(m) in in_prefix]
        early = [n for n, m in named_prefix if id(m) in in_suffix]
        if late or early:
            moved = [f"{_names(names)} ran {when} the layer but registration order put them {where}"
                     for names, when, where in ((late, "after", "before it (in the prefix, which AdvBN freezes)"),
                                                (early, "before", "after it (in the suffix)")) if names]
            self._problem = (
                f"{type(module).__name__} runs its modules in a different order than it registers them, so its split "
                f"at {self.layer!r} (by registration order) is wrong: {'; '.join(moved)}. Pass example inputs so the "
                "split is recorded from one forward before parameters are frozen and the optimizer is built: "
                "split_model(model, layer, example_inputs=(x,)); with AdvBN: adv.detach(), then "
                "AdvBN(...).attach(model, example_inputs=(x,)) and rebuild the optimizer")

    def verify(self) -> None:
        """Staleness (see :meth:`ModelSplit.verify`), then what the first training forward found wrong, if any."""
        super().verify()
        if self._problem is not None:
            raise RuntimeError(self._problem)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._recorder is not None:
            self._recorder.remove()
            self._recorder = None

    def run_suffix(self, feature: torch.Tensor, *, train: bool, inputs: tuple[tuple, dict] | None = None) -> Any:
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
        own = layer.__dict__.get("forward")  # an instance-level forward (accelerate, peft) must survive
        layer.__dict__["forward"] = substitute  # skips the layer's own compute; only modules before it still run
        self._in_suffix = True
        try:
            with _modes(modes), torch.no_grad():
                return self.model(*args, **kwargs)
        finally:
            self._in_suffix = False
            if own is None:
                layer.__dict__.pop("forward", None)
            else:
                layer.__dict__["forward"] = own


def _caller_stacklevel() -> int:
    """``stacklevel`` of the first frame outside this package (the user's call)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def split_model(model: nn.Module, layer: str | int, mode: SplitMode = "auto", *,
                example_inputs: tuple | torch.Tensor | None = None, example_kwargs: dict | None = None,
                leaves: Sequence[str] = ()) -> ModelSplit:
    """Split ``model`` at ``layer`` (see :func:`resolve_layer`).

    ``mode="auto"`` tries :class:`FxSplit` and falls back to :class:`HookSplit` with a
    :class:`SplitFallbackWarning` (``reason`` says why); ``"fx"`` raises ``ValueError`` if the model does not trace;
    ``"hook"`` never traces. ``example_inputs`` / ``example_kwargs`` (forward arguments) let the hook split record the
    order in which modules run with one no-grad eval forward; the fx split does not need them. ``leaves``: module
    names the fx suffix graph calls whole (not traced into), so forward hooks on them fire in suffix passes.
    """
    if mode not in ("auto", "fx", "hook"):
        raise ValueError(f"split mode must be 'auto', 'fx' or 'hook', got {mode!r}")
    name = resolve_layer(model, layer)
    examples = dict(example_inputs=example_inputs, example_kwargs=example_kwargs)
    if mode == "hook":
        return HookSplit(model, name, **examples)
    try:
        return FxSplit(model, name, leaves)
    except _NotSplittable as err:
        if mode == "fx":
            raise
        why = err.why
    check = ("" if example_inputs is not None or example_kwargs is not None else
             "; its prefix/suffix follow registration order until the first training forward checks them (pass "
             "example_inputs to record them now)")
    warnings.warn(f"cannot split {type(model).__name__} at {name!r} with torch.fx ({why}): falling back to the hook "
                  f"split, which re-runs the modules before the layer on every suffix call{check}. Pass mode='hook' "
                  "to choose it explicitly", SplitFallbackWarning, stacklevel=_caller_stacklevel())
    return HookSplit(model, name, why, **examples)
