"""The interface of a model cut at one layer (:class:`ModelSplit`), with the staleness check, and the small helpers
both ways of splitting share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
from torch import nn

__all__ = ["ModelSplit", "SplitMode", "SplitFallbackWarning", "training_modes", "direct_parameters"]

SplitMode = Literal["auto", "fx", "hook"]
_RESPLIT = ("split again after the change (with AdvBN: adv.detach(); attach again after the change and rebuild the "
            "optimizer)")


class SplitFallbackWarning(UserWarning):
    """``split_model(mode="auto")`` could not use torch.fx and fell back to the hook split."""


@contextmanager
def training_modes(modules: dict[nn.Module, bool]) -> Iterator[None]:
    """Set each ``module.training`` (that module only, not its children) to its flag in ``modules``; the previous
    flags come back on exit."""
    saved = {m: m.training for m in modules}
    try:
        for m, flag in modules.items():
            m.training = flag
        yield
    finally:
        for m, flag in saved.items():
            m.training = flag


def direct_parameters(modules: Sequence[nn.Module], extra: Sequence[nn.Parameter] = ()) -> list[nn.Parameter]:
    """``extra``, then the parameters each of ``modules`` holds itself (``recurse=False``), each parameter once, in
    that order."""
    params = {id(p): p for p in extra}
    for m in modules:
        for p in m.parameters(recurse=False):
            params.setdefault(id(p), p)
    return list(params.values())


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
