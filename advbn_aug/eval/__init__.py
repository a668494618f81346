"""Robustness evaluation: common corruptions (ImageNet-C / CIFAR-10-C), benchmark file loaders, metrics (mCE),
reports, and the ``advbn-aug eval`` command."""

from .corruptions import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CIFAR10_PARAMS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    IMAGENET_PARAMS,
    SEVERITIES,
    corrupt,
    corruption_params,
    resolve_corruptions,
)
from .datasets import ImageNetCFolder, corrupted_set, default_cache_dir, images_fingerprint, load_cifar10c
from .evaluate import EvalConfig, EvalResult, evaluate_corruptions, load_model, predict
from .metrics import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    Baseline,
    accuracy,
    corruption_error,
    load_baseline,
    mean_corruption_accuracy,
    relative_corruption_error,
    summarize,
)
from .report import format_markdown, plot_baseline_bars, plot_heatmap, write_report

__all__ = [
    "ALL_CORRUPTIONS", "BENCHMARK_CORRUPTIONS", "EXTRA_CORRUPTIONS", "CORRUPTIONS", "SEVERITIES",
    "CIFAR10_PARAMS", "IMAGENET_PARAMS", "corrupt", "corruption_params", "resolve_corruptions",
    "ImageNetCFolder", "corrupted_set", "default_cache_dir", "images_fingerprint", "load_cifar10c",
    "EvalConfig", "EvalResult", "evaluate_corruptions", "load_model", "predict",
    "ALEXNET_CLEAN_ERROR", "ALEXNET_ERRORS", "Baseline", "accuracy", "corruption_error", "load_baseline",
    "mean_corruption_accuracy", "relative_corruption_error", "summarize",
    "format_markdown", "plot_baseline_bars", "plot_heatmap", "write_report",
]
