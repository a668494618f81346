"""The attacked layer's output, captured in the model's training forward for AdvBN's adversarial term.

:class:`FeatureCapture` is what one :class:`~advbn_aug.AdvBN` keeps between the clean forward and
:meth:`~advbn_aug.AdvBN.adversarial_loss`, with the two hooks that fill it:

* a forward pre-hook on the model (the *step* hook): any forward, train or eval, drops the cached feature; a training
  forward starts a step: with the hook split it keeps the forward's inputs (to re-run the layers after the cut), and
  with ``check_finite`` it snapshots the running statistics of the norm layers, so a refused step can be rolled back;
* a forward hook on the attacked layer (the *capture* hook): in a training forward it checks the output (one
  non-empty ``(N, C, H, W)`` or ``(N, T, C)`` tensor in the expected layout) and caches it, detached: by reference
  (``capture="check"``, an in-place change made downstream is detected when the feature is taken) or as a private
  copy (``capture="copy"``). With a frozen prefix it returns the detached output, cutting the graph there.

Both hooks are owned by the AdvBN (:class:`~advbn_aug.feature.hooks.OwnedHook`) and inert during its own passes
(:meth:`FeatureCapture.paused`) and while ``torch.fx`` traces the model. Nothing here changes a number.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from advbn_aug.feature.checks import check_layout
from advbn_aug.feature.config import AdvBNConfig
from advbn_aug.feature.hooks import OwnedHook, hook_owners, training_forward
from advbn_aug.feature.safety import NormSnapshot, check_batch
from advbn_aug.feature.stats import feature_layout
from advbn_aug.split import ModelSplit

__all__ = ["FeatureCapture", "capture_owners"]


class _CaptureHook(OwnedHook):
    """Forward hook on the attacked layer: caches its output in a training forward; inert otherwise."""

    def __init__(self, owner: Any, capture: FeatureCapture) -> None:
        super().__init__(owner)
        self.capture = capture

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        return self.capture._on_output(output)


class _StepHook(OwnedHook):
    """Forward pre-hook on the model: drops the last feature (any forward); a training forward starts a step."""

    def __init__(self, owner: Any, capture: FeatureCapture) -> None:
        super().__init__(owner)
        self.capture = capture

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.capture._before_forward(args, kwargs)


def capture_owners(model: nn.Module) -> list[Any]:
    """The AdvBN instances whose capture hook sits in ``model`` (its own, or copies living in a deep copy of it)."""
    return hook_owners(model, _CaptureHook)


class FeatureCapture:
    """The layer output cached by the last training forward of the model, and the hooks that cache it.

    Args:
        owner: the :class:`~advbn_aug.AdvBN` the hooks belong to (removed with
            :func:`~advbn_aug.feature.hooks.remove_hooks`).
        config: its settings (``capture``, ``freeze_prefix``, ``check_finite``, ``layout`` are read here).
    """

    def __init__(self, owner: Any, config: AdvBNConfig) -> None:
        self.owner, self.config = owner, config
        self.split: ModelSplit | None = None
        self._feature: torch.Tensor | None = None
        self._version: int | None = None
        self._dim: int | None = None  # rank of the layer output seen in training (4 maps, 3 tokens)
        self._inputs: tuple[tuple, dict] | None = None
        self._norms: list[nn.Module] = []  # the norm layers whose running statistics a training forward updates
        self._snapshot: NormSnapshot | None = None  # their statistics before the current step's clean forward
        self._layout_checked = False
        self._busy = False

    def attach(self, split: ModelSplit) -> None:
        """Hook into ``split.model``: the capture hook on the attacked layer, the step hook on the model."""
        model = split.model
        self.split = split
        split.layer_module.register_forward_hook(_CaptureHook(self.owner, self))
        model.register_forward_pre_hook(_StepHook(self.owner, self), with_kwargs=True)
        self._norms = NormSnapshot.modules_of(model, split.prefix_modules if self.config.freeze_prefix else ())
        self._layout_checked, self._dim = False, None

    def detach(self) -> None:
        """Forget the model and drop the cache (the owner removes the hooks). :attr:`feature_dim` is kept."""
        self.split, self._norms = None, []
        self.discard()

    # ---------------------------------------------------------------- what is cached
    @property
    def feature(self) -> torch.Tensor | None:
        """The cached layer output, detached (``(N, C, H, W)`` or ``(N, T, C)``); ``None`` when none is waiting."""
        return self._feature

    @property
    def feature_dim(self) -> int | None:
        """Rank of the layer output seen in training (4: maps, 3: tokens); ``None`` before the first."""
        return self._dim

    @property
    def inputs(self) -> tuple[tuple, dict] | None:
        """The ``(args, kwargs)`` of the current step's forward with the hook split (to re-run the suffix)."""
        return self._inputs

    def take(self) -> torch.Tensor:
        """The cached feature; raises ``RuntimeError`` when there is none or it was modified in place since."""
        f = self._feature
        if f is None:
            raise RuntimeError("no cached feature: call model(images) in train mode (model.train()) right before "
                               "adversarial_loss(targets); each forward's feature is used once, and any later forward "
                               "of the model (also in eval mode, e.g. a validation batch) drops it")
        if self._version is not None and f._version != self._version:
            layer = self.split.layer  # type: ignore[union-attr]
            raise RuntimeError(
                f"the output of layer {layer!r} was modified in place after AdvBN captured it (an in-place op "
                "downstream, e.g. ReLU(inplace=True) or `out += identity`): attacking it would train on the modified "
                f"values. Use AdvBN({layer!r}, capture='copy') to keep a private copy, or attach at a layer whose "
                "output is not modified in place (a block or stage output)")
        return f

    def discard(self) -> None:
        """Drop the cached feature (and the step's inputs and statistics snapshot)."""
        self._feature = self._version = self._inputs = self._snapshot = None

    def rollback(self) -> None:
        """Refuse the current step: the norm statistics back to their snapshot, the cached feature dropped."""
        if self._snapshot is not None:
            self._snapshot.restore()
        self.discard()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Both hooks inert inside the block (AdvBN's own passes through the model)."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    # ---------------------------------------------------------------- the hooks
    def _active(self) -> bool:
        return self.split is not None and not self._busy and training_forward(self.split.model)

    def _before_forward(self, args: tuple, kwargs: dict) -> None:
        """Any forward of the model (train or eval, not AdvBN's own passes) makes the cached feature stale; a training
        forward starts a step. With ``check_finite``, the step first copies the running statistics of the norm layers
        it will update (a few small buffers, no host sync): a refused step restores them, so a NaN or empty batch
        leaves the model as it was. The clean forward itself is untouched."""
        if self.split is None or self._busy or is_fx_symbolic_tracing():
            return
        self.discard()
        if not self._active():
            return
        self._inputs = (args, kwargs) if self.split.mode == "hook" else None
        if self.config.check_finite:
            self._snapshot = NormSnapshot(self._norms)

    def _on_output(self, output: Any) -> Any:
        """Cache the layer output; with a frozen prefix, also cut the graph there (no gradient flows upstream)."""
        if not self._active():
            return None
        try:
            self._check_output(output)
        except Exception:
            self.rollback()  # an unfrozen prefix has run in train mode (its BatchNorms counted the batch)
            raise
        self._dim = output.dim()
        detached = output.detach()
        if self.config.capture == "copy" or torch.compiler.is_compiling():
            # under torch.compile the version counter read here is the traced (fake) tensor's, a constant of the
            # graph unrelated to the real output's: capture="check" would misfire, so the compiled graph keeps a copy
            self._feature, self._version = detached.clone(), None
        else:  # by reference: detach() shares the version counter, so an in-place change downstream is seen
            self._feature, self._version = detached, detached._version
        return detached if self.config.freeze_prefix else None

    def _check_output(self, output: Any) -> None:
        """The layer output must be one non-empty ``(N, C, H, W)`` or ``(N, T, C)`` tensor in the expected layout."""
        assert self.split is not None
        layer = self.split.layer
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"AdvBN layer {layer!r} returned {type(output).__name__}, not a tensor: attach to a "
                            "layer whose output is a single (N, C, H, W) or (N, T, C) tensor")
        feature_layout(output, name=f"the output of layer {layer!r}")
        check_batch(f"the output of layer {layer!r}", output)
        if not self._layout_checked:
            check_layout(self.split.model, layer, output, self.config.layout)
            self._layout_checked = True
