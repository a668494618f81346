"""The CIFAR-10 benchmark of the recipe (``advbn-aug recipe cifar10``); importing it registers the benchmark."""

from advbn_aug.recipe.core.benchmark import Benchmark, register_benchmark


def _benchmark() -> Benchmark:
    from advbn_aug.recipe.cifar10.benchmark import cifar10_benchmark

    return cifar10_benchmark()


register_benchmark("cifar10", _benchmark)
