"""Split by hook substitution (:class:`HookSplit`): the whole model runs with the layer's forward replaced by one
that returns the feature; prefix and suffix come from the order in which modules run (recorded from example inputs,
or guessed from registration order and checked on the first training forward)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from advbn_aug.split.base import ModelSplit, direct_parameters, training_modes
from advbn_aug.split.layers import resolve_layer

__all__ = ["HookSplit"]


def _names(names: Sequence[str], limit: int = 6) -> str:
    """The first ``limit`` names, quoted, then how many more."""
    return ", ".join(map(repr, names[:limit])) + (f" and {len(names) - limit} more" if len(names) > limit else "")


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
            super().__init__(model, name, prefix, suffix, direct_parameters(prefix), reason)
            self._handles = [model.register_forward_pre_hook(self._start_recording, prepend=True),
                             model.register_forward_hook(self._finish_recording)]
            return
        recorder = _Recorder(model)
        try:
            with torch.no_grad(), training_modes({m: False for m in model.modules()}):
                model(*(example_inputs or ()), **(example_kwargs or {}))
        finally:
            recorder.remove()
        named_prefix, named_suffix, order = _split_by_record(model, name, recorder.events)
        prefix = [m for _, m in named_prefix]
        super().__init__(model, name, prefix, [m for _, m in named_suffix], direct_parameters(prefix), reason)
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
            with training_modes(modes), torch.no_grad():
                return self.model(*args, **kwargs)
        finally:
            self._in_suffix = False
            if own is None:
                layer.__dict__.pop("forward", None)
            else:
                layer.__dict__["forward"] = own
