"""The seam between the recipe machinery and a benchmark, and the registry of benchmarks.

The runner (locks, resumable runs, committed ``result.json`` copies), the training loop, the evaluation modes, the
evidence matrix and the table statistics are shared; a :class:`Benchmark` holds what differs between benchmarks:
the arms and comparisons, the data, the model with its frozen prefix and exported keys, the training-time
augmentation, the input normalisation, the evaluation, the table, and optional extras (DeepAugment data, work before
several workers start, evaluation modes besides ``adv_route``).

A benchmark package registers itself when it is imported (``register_benchmark("cifar10", factory)`` in
``advbn_aug/recipe/cifar10/__init__.py``); its config class names it (``benchmark`` class attribute), so
:func:`benchmark_of` finds the benchmark of any config whose class was imported. This module imports no benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advbn_aug.recipe.core.config import ArmConfig
from advbn_aug.recipe.core.evidence import Comparisons

__all__ = ["Benchmark", "register_benchmark", "get_benchmark", "benchmark_of", "benchmark_names"]


@dataclass(frozen=True)
class Benchmark:
    """What one benchmark plugs into the recipe machinery (every callable takes the benchmark's config).

    ``load_data(cfg, data_dir)``: an object with ``train_x`` (uint8 NHWC), ``train_y`` and ``describe()``;
    ``load_model(cfg)``: ``(pretrained model, keys its export keeps)``; ``load_exported(cfg, path)``: an exported
    state dict in a fresh model; ``prefix_modules(model, cfg)``: the frozen prefix; ``augment(x, cfg)``: the
    training-time augmentation of a float NCHW batch in [0, 1]; ``evaluate(model, cfg, data, device, amp, name,
    out_dir, cache_dir, progress)``: the main evaluation's result fields; ``adv_keys``: the fields the
    ``adv_route`` mode keeps; ``aggregate(results, cfg, output, arm_order, commands, jobs)``: writes the table and
    returns it; ``short_table(doc)``, ``summary(result)``: console lines.

    Optional: ``untrained(cfg, data, device)``: the model of an arm with ``train: false`` (default: the pretrained
    model as loaded); ``deepaugment_data(cfg, data, cache_root, device, progress)``: ``(x, y)`` added to the
    training pool of an arm with ``deepaugment: true``; ``prepare_workers(cfg, data, cache_dir, processes)``: work
    done once before several worker processes start (a shared cache); ``mode_key(cfg, name)``: the settings of
    evaluation mode ``name`` its key holds; ``run_mode(mode, cfg, models, data, device, amp, name, cache_dir,
    cache_root)``: the fields of a mode other than ``adv_route`` (``models``: ``{"clean"[, "adv"]}``; ``None``:
    skipped); ``clean_route_modes``: the modes that need no adversarial-route model file.
    """

    name: str
    arms: dict[str, ArmConfig]
    comparisons: Comparisons
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
    deepaugment_data: Callable[..., tuple[Any, Any]] | None = None
    prepare_workers: Callable[[Any, Any, str | None, int], None] | None = None
    mode_key: Callable[[Any, str], dict[str, Any]] | None = None
    run_mode: Callable[..., dict[str, Any] | None] | None = None
    clean_route_modes: tuple[str, ...] = ()


_FACTORIES: dict[str, Callable[[], Benchmark]] = {}
_BUILT: dict[str, Benchmark] = {}


def register_benchmark(name: str, factory: Callable[[], Benchmark]) -> None:
    """Make ``factory`` (called once, on first use) the maker of benchmark ``name``; registering the same name again
    replaces it."""
    _FACTORIES[name] = factory
    _BUILT.pop(name, None)


def benchmark_names() -> list[str]:
    """The names of the registered benchmarks, in registration order."""
    return list(_FACTORIES)


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark called ``name`` (built on first use)."""
    if name not in _BUILT:
        if name not in _FACTORIES:
            raise ValueError(f"unknown benchmark {name!r}; registered: {benchmark_names()} (a benchmark registers "
                             "itself when its package, e.g. advbn_aug.recipe.pacs, is imported)")
        bench = _FACTORIES[name]()
        if bench.name != name:
            raise ValueError(f"the factory of benchmark {name!r} made one called {bench.name!r}")
        _BUILT[name] = bench
    return _BUILT[name]


def benchmark_of(cfg: Any) -> Benchmark:
    """The benchmark a config belongs to (its class's ``benchmark`` attribute)."""
    name = getattr(type(cfg), "benchmark", None)
    if not isinstance(name, str):
        raise TypeError(f"{type(cfg).__name__} is not a benchmark config: it has no 'benchmark' class attribute")
    return get_benchmark(name)
