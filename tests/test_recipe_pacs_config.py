"""The PACS recipe's settings (advbn_aug.recipe.pacs_config, pacs_command): validation, the candidate AdvBN layers,
the CLI, the crop, the table on hand-made results; and the CIFAR-10 recipe's digests, unchanged by the benchmark
seam."""

from __future__ import annotations

import argparse

import pytest
import torch


def test_cifar_digests_unchanged_by_the_benchmark_seam():
    """Finished runs are matched by these digests: the PACS generalisation must not move them (values computed from
    the code before it)."""
    from advbn_aug.recipe.config import DEFAULT_ARMS, PRESETS, digest

    assert {n: [digest(c.train_key()), digest(c.eval_key())] for n, c in PRESETS.items()} == {
        "full": ["d47c6f8ef485", "5442ff85812c"], "short": ["dfda0aa73a00", "5442ff85812c"],
        "tiny": ["38f1577ba557", "288ab1240958"]}
    # the arms that existed then (arms added later, e.g. the issue-23 stacks, must leave these unchanged)
    first = ("pretrained", "standard", "advbn", "augmix", "augmix_advbn", "mixstyle", "dsu", "deepaugment_augmix",
             "deepaugment_augmix_advbn")
    assert digest([DEFAULT_ARMS[a].to_dict() for a in first]) == "99df235136a1"


def test_config_validation_and_task():
    from advbn_aug.recipe.pacs_config import PACS_FULL, PACSConfig, pacs_prefix_names

    assert PACS_FULL.task == "single_source_photo" and PACS_FULL.targets() == ["art_painting", "cartoon", "sketch"]
    assert len(PACS_FULL.seeds) >= 3 and PACS_FULL.img_size == 128
    lodo = PACSConfig(protocol="leave_one_out", domain="cartoon")
    assert lodo.task == "leave_one_out_cartoon" and lodo.targets() == ["cartoon"]
    assert pacs_prefix_names("blocks.1") == ("conv_stem", "bn1", "blocks.0", "blocks.1")
    for bad in ({"protocol": "x"}, {"domain": "clipart"}, {"advbn": {"layer": "layer1"}}, {"extras": ["tta"]},
                {"steps": 0}, {"crop_scale": [0.9, 0.5]}, {"seeds": [1, 1]}):
        with pytest.raises(ValueError):
            PACSConfig(**bad)
    assert PACSConfig.from_yaml(lodo.to_yaml()) == lodo
    # the train key changes with the task, so runs of different tasks never match
    assert lodo.train_key() != PACSConfig(protocol="leave_one_out", domain="sketch").train_key()


def test_candidate_layers_are_those_of_the_layer_survey():
    import timm

    from advbn_aug.layer_survey import suggest_layers
    from advbn_aug.recipe.pacs_config import PACS_LAYERS

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=7)
    names = [c.name for c in suggest_layers(model, torch.rand(2, 3, 64, 64))]
    assert tuple(names) == PACS_LAYERS


def _parse(*argv):
    from advbn_aug.recipe.command import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_cli_flags():
    from advbn_aug.config_cli import ConfigArgumentError
    from advbn_aug.recipe.pacs_command import pacs_default_folders
    from advbn_aug.recipe.pacs_config import PACS_FULL, PACS_TINY

    assert _parse("pacs") == PACS_FULL
    assert _parse("pacs", "--tiny") == PACS_TINY
    lodo = _parse("pacs", "--protocol", "leave_one_out")
    assert lodo.domain == "sketch" and lodo.advbn == PACS_FULL.advbn
    assert pacs_default_folders(False, lodo)[0].as_posix() == "recipes/pacs/results/leave_one_out_sketch"
    assert pacs_default_folders(True, lodo)[1].as_posix() == "runs/pacs-tiny/leave_one_out_sketch/runs"
    layer = _parse("pacs", "--advbn-layer", "blocks.2", "--seeds", "0")
    assert layer.advbn == {**PACS_FULL.advbn, "layer": "blocks.2"} and layer.seeds == [0]
    with pytest.raises(ValueError, match="candidate layers"):
        _parse("pacs", "--advbn-layer", "layer1")
    with pytest.raises(ConfigArgumentError, match="CIFAR-10 recipe flag"):
        _parse("pacs", "--corruptions", "fog")
    with pytest.raises(ConfigArgumentError, match="presets"):
        _parse("pacs", "--preset", "short")
    with pytest.raises(ConfigArgumentError, match="PACS recipe"):
        _parse("cifar10", "--protocol", "leave_one_out")


def test_tiny_default_folders_are_ignored_by_git():
    import subprocess
    from pathlib import Path

    from advbn_aug.recipe.pacs_command import pacs_default_folders
    from advbn_aug.recipe.pacs_config import PACS_TINY

    repo = Path(__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in (*pacs_default_folders(True, PACS_TINY), pacs_default_folders(False, PACS_TINY)[1]):
        probe = folder / "results.md"
        assert subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=repo).returncode == 0, probe


def test_random_resized_crop_flip():
    from advbn_aug.recipe.pacs_data import random_resized_crop_flip

    torch.manual_seed(0)
    x = torch.rand(8, 3, 12, 12)
    full = random_resized_crop_flip(x, (1.0, 1.0), (1.0, 1.0))  # the whole image, flipped or not
    for a, b in zip(full, x):
        assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, b.flip(-1), atol=1e-5)
    out = random_resized_crop_flip(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    torch.manual_seed(1)
    again = random_resized_crop_flip(x)
    torch.manual_seed(1)
    assert torch.equal(again, random_resized_crop_flip(x))  # drawn from the global RNG: seeded runs repeat


def _run(arm: str, seed: int, acc: dict[str, float], adv: dict[str, float] | None = None):
    from advbn_aug.recipe.pacs_config import PACS_ARMS

    r = {"arm": PACS_ARMS[arm].to_dict(), "seed": seed, "sha256": f"{seed:x}" * 64, "train_seconds": 10.0,
         "eval_seconds": 2.0, "acc": acc, "mean_acc": sum(acc.values()) / len(acc), "code": None}
    if adv is not None:
        r["extras"] = {"adv_route": {"acc": adv, "mean_acc": sum(adv.values()) / len(adv)}}
    return r


def test_table_pairs_by_seed_and_routes(tmp_path):
    from advbn_aug.recipe.pacs_config import PACSConfig
    from advbn_aug.recipe.pacs_table import aggregate_pacs

    cfg = PACSConfig(seeds=[0, 1, 2], arms=["standard", "advbn"])
    runs = []
    for s in range(3):
        base = {"art_painting": 0.6 + s / 100, "cartoon": 0.3, "sketch": 0.2 + s / 50}
        runs.append(_run("standard", s, base))
        runs.append(_run("advbn", s, {k: v + 0.02 + 0.001 * s for k, v in base.items()},
                         {k: v + 0.05 for k, v in base.items()}))
    doc = aggregate_pacs(runs, cfg, tmp_path, ["standard", "advbn"])
    cell = doc["evidence"]["advbn_vs_standard"]["mean"]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(0.021) and cell["lo"] > 0
    adv = doc["evidence"]["advbn_vs_standard"]["sketch_adv"]
    assert adv["mean"] == pytest.approx(0.05) and adv["excludes_zero"]
    assert doc["arms"]["advbn"]["mean_adv"]["mean"] == pytest.approx(doc["arms"]["standard"]["mean"]["mean"] + 0.05)
    text = (tmp_path / "results.md").read_text()
    assert "128 px" in text and "| standard | 3 |" in text and "AdvBN vs standard" in text
    for name in ("results.json", "results.png", "sha256.txt"):
        assert (tmp_path / name).is_file()


def test_committed_config_files_are_the_presets():
    from pathlib import Path

    from advbn_aug.recipe.pacs_config import PACS_FULL, PACS_TINY, PACSConfig

    folder = Path(__file__).resolve().parents[1] / "recipes" / "pacs" / "configs"
    assert PACSConfig.from_yaml(folder / "full.yaml") == PACS_FULL
    assert PACSConfig.from_yaml(folder / "tiny.yaml") == PACS_TINY
