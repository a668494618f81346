"""advbn_aug.recipe.cifar10.benchmark: what the CIFAR-10 benchmark plugs into the recipe machinery, and that
importing the package registers it."""

from __future__ import annotations

import pytest


def test_the_registry_returns_the_cifar10_benchmark_built_from_its_modules():
    import advbn_aug.recipe.cifar10  # noqa: F401  (registers the benchmark)
    from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD
    from advbn_aug.recipe.cifar10 import eval_modes
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS, HYPOTHESES
    from advbn_aug.recipe.cifar10.data import RecipeData, deepaugment_data
    from advbn_aug.recipe.cifar10.evaluate import evaluate_cifar10
    from advbn_aug.recipe.cifar10.model import augment, cifar_prefix_modules, load_cifar_model
    from advbn_aug.recipe.cifar10.table import aggregate, short_table
    from advbn_aug.recipe.core.benchmark import get_benchmark

    bench = get_benchmark("cifar10")
    assert bench is get_benchmark("cifar10") and bench.name == "cifar10"
    assert bench.arms is DEFAULT_ARMS and bench.comparisons is HYPOTHESES
    assert bench.mean == tuple(CIFAR_RESNET_MEAN) and bench.std == tuple(CIFAR_RESNET_STD)
    assert (bench.load_data, bench.load_model, bench.prefix_modules, bench.augment, bench.evaluate) == \
        (RecipeData, load_cifar_model, cifar_prefix_modules, augment, evaluate_cifar10)
    assert (bench.aggregate, bench.short_table, bench.deepaugment_data) == (aggregate, short_table, deepaugment_data)
    assert bench.mode_key is eval_modes.mode_key and bench.run_mode is eval_modes.run_mode
    assert bench.clean_route_modes == eval_modes.CLEAN_ROUTE_MODES
    assert bench.untrained is None  # the pretrained arm is the model as loaded
    assert {"clean_acc_jpeg", "mca", "per_corruption"} <= set(bench.adv_keys)


def test_an_unknown_benchmark_is_refused_naming_the_registered_ones():
    import advbn_aug.recipe.cifar10  # noqa: F401
    import advbn_aug.recipe.pacs  # noqa: F401
    from advbn_aug.recipe.core.benchmark import get_benchmark

    with pytest.raises(ValueError, match=r"unknown benchmark 'cifar100'; registered: \[.*'cifar10'.*'pacs'.*\]"):
        get_benchmark("cifar100")


def test_the_run_summary_line():
    from advbn_aug.recipe.cifar10.benchmark import cifar10_benchmark

    summary = cifar10_benchmark().summary
    assert summary({"clean_acc_jpeg": 0.9123, "clean_acc_lossless": 0.95, "mca": 0.7}) == \
        "clean(JPEG) 91.23%  lossless 95.00%  mCA 70.00%"
    assert summary({"clean_acc_jpeg": 0.9, "mca": 0.7}) == "clean(JPEG) 90.00%  lossless n/a  mCA 70.00%"
