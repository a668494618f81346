"""Test-time BatchNorm adaptation: the free alternative to robust training that an evaluation should report next to it.

Modes (``EvalConfig.tta``), each applied to every evaluated set separately, starting from the model's own
statistics and restoring them afterwards:

* ``"none"``: the trained running statistics (the standard protocol);
* ``"full"``: running statistics re-estimated on the whole test set (one extra no-grad pass, cumulative average),
  then predicted in eval mode (Schneider et al., NeurIPS 2020, with the source prior N = 0);
* ``"online"``: the trained statistics updated with momentum on each test batch before it is predicted (streaming).

Only BatchNorm layers change; everything else stays in eval mode and no parameter is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

__all__ = ["TTA_MODES", "TTAMode", "batchnorms", "preserved_bn_state", "estimate_bn_stats", "adapted_predict"]

TTAMode = Literal["none", "full", "online"]
TTA_MODES: tuple[str, ...] = ("none", "full", "online")
_BN = nn.modules.batchnorm._BatchNorm


def batchnorms(model: nn.Module) -> list[_BN]:
    """The model's BatchNorm layers that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats and m.running_mean is not None]


@contextmanager
def preserved_bn_state(model: nn.Module) -> Iterator[list[_BN]]:
    """Yield the BatchNorm layers; on exit restore their statistics, momentum and mode exactly."""
    bns = batchnorms(model)
    saved = [({k: v.clone() for k, v in bn.state_dict().items()}, bn.momentum, bn.training) for bn in bns]
    try:
        yield bns
    finally:
        for bn, (state, momentum, training) in zip(bns, saved):
            bn.load_state_dict(state)
            bn.momentum, bn.training = momentum, training


@contextmanager
def _bn_train(model: nn.Module, bns: list[_BN]) -> Iterator[None]:
    """The model in eval mode except its BatchNorms (train mode: batch statistics, running update)."""
    model.eval()
    for bn in bns:
        bn.train()
    try:
        yield
    finally:
        model.eval()


@torch.no_grad()
def estimate_bn_stats(model: nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Replace the BatchNorm running statistics by their cumulative average over ``inputs`` (model-ready batches)."""
    bns = batchnorms(model)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    with _bn_train(model, bns):
        for x in inputs:
            model(x)


def adapted_predict(predict: Callable[..., tuple[np.ndarray, np.ndarray | None]],
                    prepare: Callable[[Any], torch.Tensor], model: nn.Module, images: Any, batches: Callable,
                    mode: TTAMode, momentum: float, **run: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``predict(model, images, **run)`` under test-time adaptation ``mode``; the model comes back unchanged.

    ``prepare`` turns one raw batch into the model's input, ``batches(images)`` yields ``(raw batch, labels)``
    (the same batching ``predict`` uses), so the adaptation sees exactly the inputs that are predicted.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time adaptation {mode!r}: choose one of {TTA_MODES}")
    if mode == "none":
        return predict(model=model, images=images, **run)
    with preserved_bn_state(model) as bns:
        if not bns:
            raise ValueError(f"test-time adaptation {mode!r} needs BatchNorm layers with running statistics; this "
                             "model has none (use tta='none')")
        if mode == "full":
            estimate_bn_stats(model, (prepare(xb) for xb, _ in batches(images)))
            return predict(model=model, images=images, **run)
        for bn in bns:
            bn.momentum = momentum
        preds, labels = [], []
        for xb, yb in batches(images):
            with torch.no_grad(), _bn_train(model, bns):
                model(prepare(xb))
            p, _ = predict(model=model, images=np.asarray(xb), **run)
            preds.append(p)
            if yb is not None:
                labels.append(np.asarray(yb))
        return np.concatenate(preds), (np.concatenate(labels) if labels else None)
