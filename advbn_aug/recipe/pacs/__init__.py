"""The PACS benchmark of the recipe (``advbn-aug recipe pacs``); importing it registers the benchmark."""

from advbn_aug.recipe.core.benchmark import Benchmark, register_benchmark


def _benchmark() -> Benchmark:
    from advbn_aug.recipe.pacs.benchmark import pacs_benchmark

    return pacs_benchmark()


register_benchmark("pacs", _benchmark)
