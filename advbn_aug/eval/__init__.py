"""Robustness evaluation: common corruptions (ImageNet-C / CIFAR-10-C), benchmark file loaders, metrics (mCE),
reports, and the ``advbn-aug eval`` command."""

from advbn_aug._extras import lazy_getattr

# Each name is imported from its module on first use: `advbn_aug.eval.checkpoint` (used by the timm task) and
# `advbn_aug.eval.metrics` load without the [eval] extra; the corruptions need OpenCV and SciPy and say so
_MODULES: dict[str, tuple[str, ...]] = {
    ".corruptions": ("ALL_CORRUPTIONS", "BENCHMARK_CORRUPTIONS", "EXTRA_CORRUPTIONS", "CORRUPTIONS", "SEVERITIES",
                     "CIFAR10_PARAMS", "IMAGENET_PARAMS", "corrupt", "corruption_params", "resolve_corruptions"),
    ".datasets": ("ImageNetCFolder", "corrupted_set", "default_cache_dir", "images_fingerprint", "load_cifar10c"),
    ".evaluate": ("EvalConfig", "evaluate_corruptions", "load_model", "predict"),
    ".metrics": ("ALEXNET_CLEAN_ERROR", "ALEXNET_ERRORS", "Baseline", "accuracy", "corruption_error", "load_baseline",
                 "mean_corruption_accuracy", "relative_corruption_error", "summarize"),
    ".report": ("format_markdown", "plot_baseline_bars", "plot_heatmap", "write_report"),
    ".results": ("EvalResult",),
}
__getattr__ = lazy_getattr(__name__, {name: module for module, names in _MODULES.items() for name in names})

__all__ = [name for names in _MODULES.values() for name in names]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
