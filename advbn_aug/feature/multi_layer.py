"""Multi-layer AdvBN: the statistics of further layers, inside the downstream passes, perturbed by the same attack.

The attack cuts the model at its first layer and runs the layers after it; forward hooks on each further layer
(``extra_layers``) replace that layer's output ``o`` with ``clamp((o - mu) * s_k + mu * m_k)`` while a pass is
*active*, ``mu`` being the channel mean of ``o`` in that pass (a constant, as for the first layer). Outside the
attack and the adversarial pass the hooks do nothing, so clean and eval forwards are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from advbn_aug.feature.hooks import OwnedHook
from advbn_aug.feature.stats import feature_layout, feature_stats, multiplier_shape, perturb_stats, stats_view

__all__ = ["InnerLayers", "InnerHook"]

Pair = tuple[torch.Tensor, torch.Tensor]


class InnerHook(OwnedHook):
    """Forward hook on one further layer; ``owner`` is the :class:`~advbn_aug.AdvBN` (which removes it)."""

    def __init__(self, owner: Any, inner: InnerLayers, index: int) -> None:
        super().__init__(owner)
        self.inner, self.index = inner, index

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        return self.inner._apply(self.index, output)


class InnerLayers:
    """The further layers of one AdvBN: their hooks, multiplier shapes and clamps, and the pairs of the current pass.

    ``clamp`` is the clamp spec (a number, ``None`` or ``"auto"``: 0 where the layer's output is non-negative on the
    first pass, decided per layer); ``nhwc``: the outputs are channels-last maps (statistics over the last axis).
    The hooks are owned by ``owner``, which removes them (:func:`~advbn_aug.feature.hooks.remove_hooks`).
    """

    def __init__(self, owner: Any, names: Sequence[str], modules: Sequence[nn.Module], clamp: Any, nhwc: bool):
        self.names = list(names)
        self._clamp_spec, self._nhwc = clamp, nhwc
        self.shapes: list[tuple[int, ...]] | None = None
        self.clamps: list[float | None] = []
        self._pairs: Sequence[Pair] | None = None
        self._recording: list[torch.Tensor] | None = None
        for i, m in enumerate(modules):
            m.register_forward_hook(InnerHook(owner, self, i))

    def _view(self, o: torch.Tensor) -> torch.Tensor:
        return stats_view(o, self._nhwc)

    def _apply(self, index: int, output: Any) -> Any:
        if self._recording is not None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"extra layer {self.names[index]!r} returned {type(output).__name__}, not a tensor")
            feature_layout(output, name=f"the output of extra layer {self.names[index]!r}")
            self._recording.append(output.detach())
            return None
        if self._pairs is None:
            return None
        view = self._view(output)
        mean = feature_stats(view.detach()).mean
        m, s = self._pairs[index]
        out = perturb_stats(view, mean, m.reshape(mean.shape), s.reshape(mean.shape), self.clamps[index])
        return out.reshape(output.shape).to(output.dtype)

    @contextmanager
    def recording(self) -> Iterator[list[torch.Tensor]]:
        """Record each further layer's output of one pass (no perturbation); sets ``shapes`` and the clamps."""
        self._recording = []
        try:
            yield self._recording
        finally:
            seen, self._recording = self._recording, None
        if len(seen) != len(self.names):
            raise RuntimeError(f"the extra layers {self.names} ran {len(seen)} times in one pass of the layers after "
                               "the attacked one; each must run exactly once there (pick stage outputs after it)")
        self.shapes = [multiplier_shape(self._view(o)) for o in seen]
        if self._clamp_spec == "auto":
            self.clamps = [0.0 if bool((o.amin() >= 0).item()) else None for o in seen]
        else:
            self.clamps = [self._clamp_spec] * len(seen)

    @contextmanager
    def active(self, pairs: Sequence[Pair]) -> Iterator[None]:
        """Apply ``pairs`` (one ``(m, s)`` per further layer) in the passes run inside the block."""
        self._pairs = pairs
        try:
            yield
        finally:
            self._pairs = None

    def starts(self, device: torch.device) -> list[Pair]:
        """Multipliers of ones for each further layer (``recording`` must have run once)."""
        assert self.shapes is not None
        return [(torch.ones(sh, device=device), torch.ones(sh, device=device)) for sh in self.shapes]
