"""Evaluating one exported PACS model: accuracy on every image of each target domain, their mean, and (leave-one-out)
accuracy on the source domains' official crossval lists."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advbn_aug.recipe.pacs.config import PACSConfig
from advbn_aug.recipe.pacs.data import PACS_MEAN, PACS_STD, PACSData

__all__ = ["evaluate_pacs", "pacs_summary"]


def evaluate_pacs(model: nn.Module, cfg: PACSConfig, data: PACSData, device: torch.device, amp: bool, name: str,
                  out_dir: Path, cache_dir: str | None, progress: bool) -> dict[str, Any]:
    """``{"acc": {domain: accuracy}, "mean_acc", "images": {domain: n}, "val_acc" (leave-one-out), "eval_seconds"}``
    (``out_dir``, ``cache_dir``, ``progress``: unused, the evaluation has no cached sets)."""
    from advbn_aug.eval import predict

    t0 = time.perf_counter()
    run = dict(batch_size=cfg.eval_batch_size, device=device, mean=PACS_MEAN, std=PACS_STD, amp=amp)
    model = model.eval()
    out: dict[str, Any] = {"acc": {}, "images": {}}
    for domain, (x, y) in data.tests.items():
        out["acc"][domain] = float((predict(model, x, **run)[0] == y).mean())
        out["images"][domain] = len(y)
    out["mean_acc"] = sum(out["acc"].values()) / len(out["acc"])
    if data.val is not None:
        out["val_acc"] = float((predict(model, data.val[0], **run)[0] == data.val[1]).mean())
    out["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def pacs_summary(result: dict[str, Any]) -> str:
    """``art_painting 61.2%  cartoon 30.1%  sketch 25.0%  mean 38.8%`` (the log line of a finished run)."""
    cells = [f"{d} {100 * a:.1f}%" for d, a in result["acc"].items()]
    return "  ".join([*cells, f"mean {100 * result['mean_acc']:.1f}%"])
