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

import os
import sys
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from advbn_aug.split.base import ModelSplit, SplitFallbackWarning, SplitMode
from advbn_aug.split.fx import FxSplit, FxSplitError
from advbn_aug.split.hook import HookSplit
from advbn_aug.split.layers import layer_candidates, resolve_layer

__all__ = ["resolve_layer", "layer_candidates", "ModelSplit", "FxSplit", "FxSplitError", "HookSplit", "split_model",
           "SplitMode", "SplitFallbackWarning"]


def _caller_stacklevel() -> int:
    """``stacklevel`` of the first frame outside this package (the user's call)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # advbn_aug/
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
    except FxSplitError as err:
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
