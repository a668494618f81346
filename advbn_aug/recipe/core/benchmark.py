"""The seam between the recipe machinery and a benchmark.

The runner (locks, resumable runs, committed ``result.json`` copies), the training loop, the evaluation modes, the
evidence matrix and the table statistics are shared; a :class:`Benchmark` holds what differs between CIFAR-10 and
PACS: the arms and comparisons, the data, the model with its frozen prefix and exported keys, the training-time crop
and flip, the input normalisation, the evaluation, and the table. :func:`benchmark_of` finds a config's benchmark
from its class (``benchmark`` class attribute; the CIFAR-10 ``RecipeConfig`` has none and means ``cifar10``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advbn_aug.recipe.cifar10.config import ArmConfig

__all__ = ["Benchmark", "benchmark_of", "get_benchmark", "BENCHMARK_NAMES"]

BENCHMARK_NAMES = ("cifar10", "pacs")


@dataclass(frozen=True)
class Benchmark:
    """What one benchmark plugs into the recipe machinery (every callable takes the benchmark's config).

    ``load_data(cfg, data_dir)``: an object with ``train_x`` (uint8 NHWC), ``train_y`` and ``describe()``;
    ``load_model(cfg)``: ``(pretrained model, keys its export keeps)``; ``load_exported(cfg, path)``: an exported
    state dict in a fresh model; ``prefix_modules(model, cfg)``: the frozen prefix; ``augment(x, cfg)``: the
    training-time crop and flip of a float NCHW batch in [0, 1]; ``evaluate(model, cfg, data, device, amp, name,
    out_dir, cache_dir, progress)``: the main evaluation's result fields; ``adv_keys``: the fields the
    ``adv_route`` mode keeps; ``aggregate(results, cfg, output, arm_order, commands, jobs)``: writes the table and
    returns it; ``short_table(doc)``, ``summary(result)``: console lines; ``untrained(cfg, data, device)``: the
    model of an arm with ``train: false`` (default: the pretrained model as loaded).
    """

    name: str
    arms: dict[str, ArmConfig]
    comparisons: dict[str, tuple[str, str, str]]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    load_data: Callable[[Any, str | Path | None], Any]
    load_model: Callable[[Any], tuple[nn.Module, list[str]]]
    load_exported: Callable[[Any, Path], nn.Module]
    prefix_modules: Callable[[nn.Module, Any], list[nn.Module]]
    augment: Callable[[torch.Tensor, Any], torch.Tensor]
    evaluate: Callable[..., dict[str, Any]]
    adv_keys: tuple[str, ...]
    aggregate: Callable[..., dict[str, Any]]
    short_table: Callable[[dict[str, Any]], str]
    summary: Callable[[dict[str, Any]], str]
    untrained: Callable[[Any, Any, torch.device], nn.Module] | None = None


def _cifar10() -> Benchmark:
    from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS
    from advbn_aug.recipe.cifar10.data import RecipeData
    from advbn_aug.recipe.cifar10.evaluate import _evaluate
    from advbn_aug.recipe.cifar10.table import _HYPOTHESES, aggregate, short_table
    from advbn_aug.recipe.core import train as _train_module

    def load_exported(cfg: Any, path: Path) -> nn.Module:
        from advbn_aug.eval import load_model

        return load_model(cfg.model, path)[0].eval()

    def summary(r: dict[str, Any]) -> str:
        lossless = f"{100 * r['clean_acc_lossless']:.2f}%" if "clean_acc_lossless" in r else "n/a"
        return f"clean(JPEG) {100 * r['clean_acc_jpeg']:.2f}%  lossless {lossless}  mCA {100 * r['mca']:.2f}%"

    return Benchmark(
        name="cifar10", arms=DEFAULT_ARMS, comparisons=_HYPOTHESES, mean=tuple(CIFAR_RESNET_MEAN),
        std=tuple(CIFAR_RESNET_STD), load_data=RecipeData, load_model=_train_module._load_model,
        load_exported=load_exported, prefix_modules=_train_module._prefix_modules,
        # looked up at call time, so a test can replace train._random_crop_flip
        augment=lambda x, cfg: _train_module._random_crop_flip(x),
        evaluate=_evaluate,
        adv_keys=("clean_acc_jpeg", "clean_acc_lossless", "jpeg_gap", "mca", "mca_benchmark15", "per_corruption",
                  "eval_seconds"),
        aggregate=aggregate, short_table=short_table, summary=summary)


def _pacs() -> Benchmark:
    from advbn_aug.recipe.pacs import data as pd
    from advbn_aug.recipe.pacs.config import PACS_ARMS, PACS_COMPARISONS
    from advbn_aug.recipe.pacs.evaluate import evaluate_pacs, pacs_summary
    from advbn_aug.recipe.pacs.probe import fit_linear_head
    from advbn_aug.recipe.pacs.table import aggregate_pacs, short_table_pacs

    return Benchmark(
        name="pacs", arms=PACS_ARMS, comparisons=PACS_COMPARISONS, mean=pd.PACS_MEAN, std=pd.PACS_STD,
        load_data=pd.PACSData, load_model=pd.load_pacs_model, load_exported=pd.load_pacs_export,
        prefix_modules=pd.pacs_prefix_modules,
        augment=lambda x, cfg: pd.random_resized_crop_flip(x, tuple(cfg.crop_scale)),
        evaluate=evaluate_pacs, adv_keys=("acc", "mean_acc", "val_acc", "eval_seconds"),
        aggregate=aggregate_pacs, short_table=short_table_pacs, summary=pacs_summary, untrained=fit_linear_head)


@cache
def get_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name`` (``cifar10`` or ``pacs``)."""
    builders = {"cifar10": _cifar10, "pacs": _pacs}
    if name not in builders:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {list(builders)}")
    return builders[name]()


def benchmark_of(cfg: Any) -> Benchmark:
    """The benchmark a config belongs to (its class's ``benchmark`` attribute; ``cifar10`` when it has none)."""
    return get_benchmark(getattr(type(cfg), "benchmark", "cifar10"))
