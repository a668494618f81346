"""Recipes: fine-tuning arms that test "AdvBN is complementary to image-space augmentation", and the
``advbn-aug recipe`` command.

    advbn-aug recipe cifar10 --tiny                 # the whole pipeline at toy scale (< 5 min on CPU)
    advbn-aug recipe cifar10                        # the full table (recipes/cifar10/README.md)
    advbn-aug recipe pacs --tiny                    # PACS with EfficientNet-Lite0 at toy scale (recipes/pacs/README.md)

Library use::

    from advbn_aug.recipe import RecipeConfig, run_recipe
    table = run_recipe(RecipeConfig(arms=["standard", "advbn"], seeds=[0]), output="results", runs_dir="runs")

Every (arm, seed) run fine-tunes the pretrained CIFAR ResNet with the stem and ``layer1`` frozen, exports a plain
``state_dict`` (the pretrained file's keys) to ``<runs>/<arm>/seed<k>/model.pt``, evaluates it (clean JPEG test set,
lossless test images, CIFAR-10-C-parameter corruptions generated and cached by :mod:`advbn_aug.eval`) and writes
``result.json`` next to it. Finished runs are skipped, unfinished ones resume from ``ckpt.pt``; after each run the
table (``results.md``, ``results.json``, ``results.png``) is rewritten from every finished run.

Layout: ``core/`` is the machinery every benchmark shares (the arms and the shared training fields, the runner, the
training loop, the evaluation modes, run locks, provenance, weight averaging, several workers, the evidence matrix,
the table files and charts, and :mod:`~advbn_aug.recipe.core.benchmark`, the seam a benchmark fills in); it imports
no benchmark. ``cifar10/`` and ``pacs/`` are the two benchmarks (config, data, model, evaluation, table), each
registering its :class:`~advbn_aug.recipe.core.benchmark.Benchmark` when imported. The ``advbn-aug recipe`` command
is :mod:`advbn_aug.cli.recipe`.
"""

from advbn_aug._extras import require

require("advbn_aug.recipe", "recipes", "cv2", "scipy", "matplotlib")  # corruptions, t-intervals, charts

from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS, FULL, SHORT, TINY, RecipeConfig  # noqa: E402
from advbn_aug.recipe.cifar10.table import aggregate  # noqa: E402
from advbn_aug.recipe.core.config import ArmConfig  # noqa: E402
from advbn_aug.recipe.core.provenance import code_version  # noqa: E402
from advbn_aug.recipe.core.runner import run_arm, run_recipe  # noqa: E402
from advbn_aug.recipe.core.train import export_state_dict  # noqa: E402

__all__ = ["RecipeConfig", "ArmConfig", "DEFAULT_ARMS", "run_recipe", "run_arm", "aggregate", "export_state_dict",
           "FULL", "SHORT", "TINY", "code_version"]
