"""advbn_aug.recipe.pacs.benchmark: what the PACS benchmark plugs into the recipe machinery, and that importing the
package registers it."""

from __future__ import annotations


def test_the_registry_returns_the_pacs_benchmark_built_from_its_modules():
    import advbn_aug.recipe.pacs  # noqa: F401  (registers the benchmark)
    from advbn_aug.recipe.core.benchmark import get_benchmark
    from advbn_aug.recipe.pacs import data as pd
    from advbn_aug.recipe.pacs.config import PACS_ARMS, PACS_COMPARISONS
    from advbn_aug.recipe.pacs.evaluate import evaluate_pacs, pacs_summary
    from advbn_aug.recipe.pacs.probe import fit_linear_head
    from advbn_aug.recipe.pacs.table import aggregate_pacs, short_table_pacs

    bench = get_benchmark("pacs")
    assert bench is get_benchmark("pacs") and bench.name == "pacs"
    assert bench.arms is PACS_ARMS and bench.comparisons is PACS_COMPARISONS
    assert bench.mean == pd.PACS_MEAN and bench.std == pd.PACS_STD
    assert (bench.load_data, bench.load_model, bench.load_exported, bench.prefix_modules, bench.augment) == \
        (pd.PACSData, pd.load_pacs_model, pd.load_pacs_export, pd.pacs_prefix_modules, pd.augment)
    assert (bench.evaluate, bench.summary, bench.aggregate, bench.short_table) == \
        (evaluate_pacs, pacs_summary, aggregate_pacs, short_table_pacs)
    assert bench.untrained is fit_linear_head  # the floor: a linear head on the frozen pretrained features
    assert bench.adv_keys == ("acc", "mean_acc", "val_acc", "eval_seconds")
    # no corruption grid, DeepAugment data or extra evaluation modes
    assert bench.deepaugment_data is bench.prepare_workers is bench.run_mode is None and not bench.clean_route_modes
