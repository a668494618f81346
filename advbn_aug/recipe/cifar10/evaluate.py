"""Evaluating one exported model: clean JPEG test set, lossless test images, CIFAR-10-C-parameter corruptions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advbn_aug.recipe.cifar10.config import RecipeConfig
from advbn_aug.recipe.cifar10.data import RecipeData

__all__ = ["evaluate_cifar10", "fuse_for_eval"]


def fuse_for_eval(model: nn.Module) -> nn.Module:
    """A copy of a CIFAR ResNet with every BatchNorm folded into its convolution, in ``channels_last`` memory format
    (eval only; the same function up to float rounding; ``bench/eval_speed.py`` measures the gain). Other models are
    returned unchanged."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from advbn_aug.models.cifar_resnet import BasicBlock, CifarResNet

    if not isinstance(model, CifarResNet):
        return model
    fused = copy.deepcopy(model).eval()
    fused.conv1, fused.bn1 = fuse_conv_bn_eval(fused.conv1, fused.bn1), nn.Identity()
    for block in fused.modules():
        if isinstance(block, BasicBlock):
            block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
            block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
    # the evaluation's batches are NHWC uint8 permuted to NCHW, i.e. channels_last already: matching the weights
    # lets the convolutions skip two layout conversions per layer
    return fused.to(memory_format=torch.channels_last)


def evaluate_cifar10(model: nn.Module, cfg: RecipeConfig, data: RecipeData, device: torch.device, amp: bool,
                     name: str, out_dir: Path, cache_dir: str | None, progress: bool) -> dict[str, Any]:
    """The main evaluation's result fields: clean accuracy on the JPEG test set and the lossless images (and their
    gap), mCA over the corruption grid (all corruptions and the benchmark 15) with its per-corruption and
    per-severity breakdown, and the seconds it took; the corruption sets are cached in ``cache_dir``."""
    from advbn_aug.eval import BENCHMARK_CORRUPTIONS, EvalConfig, evaluate_corruptions, predict
    from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD

    t0 = time.perf_counter()
    model = fuse_for_eval(model.eval())
    run = dict(batch_size=cfg.eval_batch_size, device=device, mean=CIFAR_RESNET_MEAN, std=CIFAR_RESNET_STD, amp=amp)
    out: dict[str, Any] = {}
    pred, _ = predict(model, data.test_x, **run)
    out["clean_acc_jpeg"] = float((pred == data.test_y).mean())
    out["clean_images_jpeg"] = len(data.test_y)
    if data.lossless_x is not None:
        pred, _ = predict(model, data.lossless_x, **run)
        out["clean_acc_lossless"] = float((pred == data.lossless_y).mean())
        out["lossless_images"] = len(data.lossless_y)
        if data.lossless_jpeg_x is not None:
            pred, _ = predict(model, data.lossless_jpeg_x, **run)
            out["clean_acc_jpeg_same"] = float((pred == data.lossless_y).mean())
            out["jpeg_gap"] = out["clean_acc_lossless"] - out["clean_acc_jpeg_same"]
    ecfg = EvalConfig(corruptions=cfg.corruptions, severities=tuple(cfg.severities), dataset="cifar10",
                      batch_size=cfg.eval_batch_size, device=str(device), amp=amp, mean=CIFAR_RESNET_MEAN,
                      std=CIFAR_RESNET_STD, cache_dir=cache_dir, name=name, progress=progress, output=str(out_dir))
    res = evaluate_corruptions(model, data.eval_x, data.eval_y, ecfg)
    out["corruption_images"] = res.num_images
    out["clean_acc_eval_subset"] = res.clean_accuracy
    out["mca"] = res.summary["mean_corruption_accuracy"]
    bench = [c for c in res.accuracy if c in BENCHMARK_CORRUPTIONS]
    out["mca_benchmark15"] = float(np.mean([a for c in bench for a in res.accuracy[c].values()])) if bench else None
    out["per_corruption"] = res.summary["per_corruption_accuracy"]
    out["per_severity"] = {str(k): v for k, v in res.summary["per_severity_accuracy"].items()}
    out["accuracy"] = {c: {str(s): a for s, a in per.items()} for c, per in res.accuracy.items()}
    out["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return out
