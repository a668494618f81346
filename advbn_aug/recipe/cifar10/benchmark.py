"""The CIFAR-10 benchmark: what it plugs into the recipe machinery
(:class:`~advbn_aug.recipe.core.benchmark.Benchmark`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD
from advbn_aug.recipe.cifar10 import eval_modes
from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS, HYPOTHESES, RecipeConfig
from advbn_aug.recipe.cifar10.corruption_cache import build_corruption_cache
from advbn_aug.recipe.cifar10.data import RecipeData, deepaugment_data
from advbn_aug.recipe.cifar10.evaluate import evaluate_cifar10
from advbn_aug.recipe.cifar10.model import augment, cifar_prefix_modules, load_cifar_model
from advbn_aug.recipe.cifar10.table import aggregate, short_table
from advbn_aug.recipe.core.benchmark import Benchmark

__all__ = ["cifar10_benchmark"]


def _load_exported(cfg: RecipeConfig, path: Path) -> nn.Module:
    from advbn_aug.eval import load_model

    return load_model(cfg.model, path)[0].eval()


def _summary(r: dict[str, Any]) -> str:
    lossless = f"{100 * r['clean_acc_lossless']:.2f}%" if "clean_acc_lossless" in r else "n/a"
    return f"clean(JPEG) {100 * r['clean_acc_jpeg']:.2f}%  lossless {lossless}  mCA {100 * r['mca']:.2f}%"


def _prepare_workers(cfg: RecipeConfig, data: RecipeData, cache_dir: str | None, processes: int) -> None:
    """The corruption cache, built once on ``processes`` cores before the workers evaluate from it."""
    build_corruption_cache(data.eval_x, cfg.corruptions, cfg.severities, cache_dir, processes)


def cifar10_benchmark() -> Benchmark:
    """The CIFAR-10 recipe: the pretrained CIFAR ResNet, crop + flip, the JPEG / lossless / corruption evaluation."""
    return Benchmark(
        name="cifar10", arms=DEFAULT_ARMS, comparisons=HYPOTHESES, mean=tuple(CIFAR_RESNET_MEAN),
        std=tuple(CIFAR_RESNET_STD), load_data=RecipeData, load_model=load_cifar_model, load_exported=_load_exported,
        prefix_modules=cifar_prefix_modules, augment=augment, evaluate=evaluate_cifar10,
        adv_keys=("clean_acc_jpeg", "clean_acc_lossless", "jpeg_gap", "mca", "mca_benchmark15", "per_corruption",
                  "eval_seconds"),
        aggregate=aggregate, short_table=short_table, summary=_summary, deepaugment_data=deepaugment_data,
        prepare_workers=_prepare_workers, mode_key=eval_modes.mode_key, run_mode=eval_modes.run_mode,
        clean_route_modes=eval_modes.CLEAN_ROUTE_MODES)
