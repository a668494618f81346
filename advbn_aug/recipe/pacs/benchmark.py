"""The PACS benchmark: what it plugs into the recipe machinery
(:class:`~advbn_aug.recipe.core.benchmark.Benchmark`)."""

from __future__ import annotations

from advbn_aug.recipe.core.benchmark import Benchmark
from advbn_aug.recipe.pacs import data as pd
from advbn_aug.recipe.pacs.config import PACS_ARMS, PACS_COMPARISONS
from advbn_aug.recipe.pacs.evaluate import evaluate_pacs, pacs_summary
from advbn_aug.recipe.pacs.probe import fit_linear_head
from advbn_aug.recipe.pacs.table import aggregate_pacs, short_table_pacs

__all__ = ["pacs_benchmark"]


def pacs_benchmark() -> Benchmark:
    """The PACS recipe: EfficientNet-Lite0, random resized crop + flip, accuracy per target domain."""
    return Benchmark(
        name="pacs", arms=PACS_ARMS, comparisons=PACS_COMPARISONS, mean=pd.PACS_MEAN, std=pd.PACS_STD,
        load_data=pd.PACSData, load_model=pd.load_pacs_model, load_exported=pd.load_pacs_export,
        prefix_modules=pd.pacs_prefix_modules, augment=pd.augment, evaluate=evaluate_pacs,
        adv_keys=("acc", "mean_acc", "val_acc", "eval_seconds"), aggregate=aggregate_pacs,
        short_table=short_table_pacs, summary=pacs_summary, untrained=fit_linear_head)
