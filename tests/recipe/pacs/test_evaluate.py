"""advbn_aug.recipe.pacs.evaluate: accuracy per target domain, their mean, the leave-one-out crossval accuracy, and
the log line of a finished run."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn


class _Brightness(nn.Module):
    """Class 1 for a bright image (normalised mean above 0), class 0 for a dark one: ``(N, 3, H, W) -> (N, 7)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = (x.mean((1, 2, 3)) > 0).float()
        return torch.nn.functional.pad(torch.stack([1 - bright, bright], 1), (0, 5))


def _images(bright: list[bool]) -> np.ndarray:
    return np.stack([np.full((8, 8, 3), 230 if b else 20, np.uint8) for b in bright])


def _data(val: bool) -> SimpleNamespace:
    tests = {"art_painting": (_images([True, True, False, False]), np.array([1, 1, 0, 0])),  # all right
             "sketch": (_images([True, False, True, False]), np.array([1, 1, 1, 1]))}  # half right
    return SimpleNamespace(tests=tests, val=(_images([True, False]), np.array([0, 0])) if val else None)


def test_evaluate_pacs_reports_each_domain_their_mean_and_the_crossval_accuracy(tmp_path):
    from advbn_aug.recipe.pacs.config import PACS_TINY
    from advbn_aug.recipe.pacs.evaluate import evaluate_pacs

    model = _Brightness().train()
    out = evaluate_pacs(model, PACS_TINY, _data(True), torch.device("cpu"), amp=False, name="toy", out_dir=tmp_path,
                        cache_dir=None, progress=False)
    assert out["acc"] == {"art_painting": 1.0, "sketch": 0.5} and list(out["acc"]) == ["art_painting", "sketch"]
    assert out["images"] == {"art_painting": 4, "sketch": 4}
    assert out["mean_acc"] == 0.75 and out["val_acc"] == 0.5 and out["eval_seconds"] >= 0
    assert not model.training  # evaluated in eval mode
    out = evaluate_pacs(model, PACS_TINY, _data(False), torch.device("cpu"), amp=False, name="toy",
                        out_dir=tmp_path, cache_dir=None, progress=False)
    assert "val_acc" not in out and out["mean_acc"] == 0.75


def test_pacs_summary_lists_each_domain_then_the_mean():
    from advbn_aug.recipe.pacs.evaluate import pacs_summary

    line = pacs_summary({"acc": {"art_painting": 0.6123, "cartoon": 0.301, "sketch": 0.25}, "mean_acc": 0.3878})
    assert line == "art_painting 61.2%  cartoon 30.1%  sketch 25.0%  mean 38.8%"
