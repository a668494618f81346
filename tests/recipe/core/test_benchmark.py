"""The benchmark registry (advbn_aug.recipe.core.benchmark): benchmarks register themselves, a config finds its
benchmark through its class, and the shared machinery imports no benchmark."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

CORE = Path(__file__).resolve().parents[3] / "advbn_aug" / "recipe" / "core"


def test_core_imports_no_benchmark():
    """core/ must not import cifar10/ or pacs/, at module level or inside a function."""
    bad = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{path.name}: {n}" for n in names if n.startswith(("advbn_aug.recipe.cifar10",
                                                                        "advbn_aug.recipe.pacs"))]
    assert not bad, bad


def test_each_config_finds_its_registered_benchmark():
    from advbn_aug.recipe.cifar10.config import FULL
    from advbn_aug.recipe.core.benchmark import benchmark_names, benchmark_of, get_benchmark
    from advbn_aug.recipe.pacs.config import PACS_TINY

    assert {"cifar10", "pacs"} <= set(benchmark_names())
    assert benchmark_of(FULL) is get_benchmark("cifar10") and benchmark_of(FULL).name == "cifar10"
    assert benchmark_of(PACS_TINY).name == "pacs" and "dsu_advbn" in benchmark_of(PACS_TINY).arms
    with pytest.raises(ValueError, match="unknown benchmark 'imagenet'"):
        get_benchmark("imagenet")
    with pytest.raises(TypeError, match="not a benchmark config"):
        benchmark_of(SimpleNamespace(arms=[]))


@pytest.fixture()
def toy_benchmark(monkeypatch):
    """A registry holding only ``toy``: one arm asking for DeepAugment data, which the benchmark does not have."""
    import advbn_aug.recipe.core.benchmark as bm
    from advbn_aug.recipe.core.config import ArmConfig

    monkeypatch.setattr(bm, "_FACTORIES", {})
    monkeypatch.setattr(bm, "_BUILT", {})
    unused = lambda *a, **k: pytest.fail("the toy benchmark is never run")  # noqa: E731
    made = []

    def factory():
        made.append(1)
        return bm.Benchmark(name="toy", arms={"da": ArmConfig("da", deepaugment=True)}, comparisons={},
                            mean=(0.5,), std=(0.5,), load_data=unused, load_model=unused, load_exported=unused,
                            prefix_modules=unused, augment=unused, evaluate=unused, adv_keys=(), aggregate=unused,
                            short_table=unused, summary=unused)

    bm.register_benchmark("toy", factory)

    class ToyConfig(SimpleNamespace):
        benchmark = "toy"

    return ToyConfig, made


def test_a_benchmark_is_built_once_and_checked_before_anything_runs(toy_benchmark, tmp_path):
    from advbn_aug.recipe.core.benchmark import benchmark_of
    from advbn_aug.recipe.core.runner import run_recipe

    config_class, made = toy_benchmark
    cfg = config_class(arms=["da"], seeds=[0])
    assert benchmark_of(cfg) is benchmark_of(cfg) and made == [1]
    with pytest.raises(ValueError, match="no DeepAugment data"):
        run_recipe(cfg, output=tmp_path / "o", runs_dir=tmp_path / "r")
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()
