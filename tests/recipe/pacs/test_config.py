"""The PACS recipe's settings (advbn_aug.recipe.pacs.config, pacs_command): validation, the candidate AdvBN layers,
the CLI, the crop, the table on hand-made results; and the CIFAR-10 recipe's digests, unchanged by the benchmark
seam."""

from __future__ import annotations

import argparse

import pytest
import torch


def test_cifar_digests_unchanged_by_the_benchmark_seam():
    """Finished runs are matched by these digests: the PACS generalisation must not move them (values computed from
    the code before it)."""
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS, PRESETS
    from advbn_aug.recipe.core.config import digest

    assert {n: [digest(PRESETS[n].train_key()), digest(PRESETS[n].eval_key())] for n in ("full", "short", "tiny")} == {
        "full": ["d47c6f8ef485", "5442ff85812c"], "short": ["dfda0aa73a00", "5442ff85812c"],
        "tiny": ["38f1577ba557", "288ab1240958"]}
    # the GPU table (issue 26) trains and evaluates the full recipe: the same keys
    assert [digest(PRESETS["gpu"].train_key()), digest(PRESETS["gpu"].eval_key())] == ["d47c6f8ef485", "5442ff85812c"]
    # the arms that existed then (arms added later, e.g. the issue-23 stacks, must leave these unchanged)
    first = ("pretrained", "standard", "advbn", "augmix", "augmix_advbn", "mixstyle", "dsu", "deepaugment_augmix",
             "deepaugment_augmix_advbn")
    assert digest([DEFAULT_ARMS[a].to_dict() for a in first]) == "99df235136a1"


def test_config_validation_and_task():
    from advbn_aug.recipe.pacs.config import PACS_FULL, PACSConfig, pacs_prefix_names

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

    from advbn_aug.feature.survey import suggest_layers
    from advbn_aug.recipe.pacs.config import PACS_LAYERS

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=7)
    names = [c.name for c in suggest_layers(model, torch.rand(2, 3, 64, 64))]
    assert tuple(names) == PACS_LAYERS


def _parse(*argv):
    from advbn_aug.cli.recipe import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_cli_flags():
    from advbn_aug.config import ConfigArgumentError
    from advbn_aug.recipe.pacs.command import pacs_default_folders
    from advbn_aug.recipe.pacs.config import PACS_FULL, PACS_TINY

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

    from advbn_aug.recipe.pacs.command import pacs_default_folders
    from advbn_aug.recipe.pacs.config import PACS_TINY

    repo = Path(__file__).resolve().parents[3]
    if not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in (*pacs_default_folders(True, PACS_TINY), pacs_default_folders(False, PACS_TINY)[1]):
        probe = folder / "results.md"
        assert subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=repo).returncode == 0, probe


def test_random_resized_crop_flip():
    from advbn_aug.recipe.pacs.data import random_resized_crop_flip

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


def _run(arm: str, seed: int, acc: dict[str, float], adv: dict[str, float] | None = None,
         ema: dict[str, float] | None = None, ema_adv: dict[str, float] | None = None):
    from advbn_aug.recipe.pacs.config import PACS_ARMS

    def fields(a):
        return {"acc": a, "mean_acc": sum(a.values()) / len(a)}

    r = {"arm": PACS_ARMS[arm].to_dict(), "seed": seed, "sha256": f"{seed:x}" * 64, "train_seconds": 10.0,
         "eval_seconds": 2.0, **fields(acc), "code": None}
    if adv is not None:
        r["extras"] = {"adv_route": fields(adv)}
        if ema_adv is not None:
            r["extras"]["adv_route"]["ema"] = fields(ema_adv)
    if ema is not None:
        r["ema"] = {"decay": 0.991, **fields(ema)}
    return r


def test_table_pairs_by_seed_and_routes(tmp_path):
    from advbn_aug.recipe.pacs.config import PACSConfig
    from advbn_aug.recipe.pacs.table import aggregate_pacs

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

    from advbn_aug.recipe.pacs.config import PACS_PRESETS, PACSConfig

    folder = Path(__file__).resolve().parents[3] / "recipes" / "pacs" / "configs"
    assert sorted(p.stem for p in folder.glob("*.yaml")) == sorted(PACS_PRESETS)
    for name, preset in PACS_PRESETS.items():
        assert PACSConfig.from_yaml(folder / f"{name}.yaml") == preset, name


def test_budget_rule_gives_both_tables_step_counts(pacs_root):
    """6 passes of floor(n / 32) steps: 312 over photo's 1,670 images, 1,020 over the 5,446 images of the official
    train lists of photo, art_painting and cartoon (counted from the shared copy)."""
    from advbn_aug.datasets.pacs import PACSDomain
    from advbn_aug.recipe.pacs.config import PACS_FULL, PACS_LOO_SKETCH, TRAIN_IMAGES, budget_steps

    assert TRAIN_IMAGES["single_source_photo"] == len(PACSDomain("photo", "all", pacs_root))
    assert TRAIN_IMAGES["leave_one_out_sketch"] == sum(len(PACSDomain(d, "train", pacs_root))
                                                       for d in ("photo", "art_painting", "cartoon"))
    assert PACS_FULL.steps == budget_steps(TRAIN_IMAGES["single_source_photo"]) == 312
    assert PACS_LOO_SKETCH.steps == budget_steps(TRAIN_IMAGES["leave_one_out_sketch"]) == 1020
    assert PACS_FULL.batch_size == PACS_LOO_SKETCH.batch_size == 32


def test_ema_decay_rule_and_the_train_key():
    from advbn_aug.recipe.core.config import digest
    from advbn_aug.recipe.pacs.config import PACS_FULL, PACS_LOO_SKETCH, PACSConfig, ema_decay_for

    d = ema_decay_for(1020)
    assert d == PACS_LOO_SKETCH.ema_decay == 0.991
    assert 0.009 < d ** 510 < 0.011 and d ** 1020 < 1e-4  # the pre-decay half weighs 1 %, the start nothing
    assert PACS_FULL.ema_decay is None and "ema_decay" not in PACS_FULL.train_key()
    # off, the train key is the one of the committed single-source runs (made before weight averaging existed)
    assert digest(PACS_FULL.train_key()) == "18830aa280ae" and digest(PACS_FULL.eval_key()) == "a2fd8be168b4"
    on = PACSConfig(ema_decay=0.99)
    assert on.train_key()["ema_decay"] == 0.99 and digest(on.eval_key()) == digest(PACS_FULL.eval_key())
    for bad in (1.0, -0.5, "0.9", True):
        with pytest.raises(ValueError, match="ema_decay"):
            PACSConfig(ema_decay=bad)
    with pytest.raises(ValueError, match="steps"):
        ema_decay_for(0)


def test_committed_single_source_runs_are_still_collected(tmp_path):
    from pathlib import Path

    from advbn_aug.recipe.core.runner import _collect
    from advbn_aug.recipe.pacs.config import PACS_ARMS, PACS_FULL

    archive = Path(__file__).resolve().parents[3] / "recipes" / "pacs" / "results" / "single_source_photo" / "runs"
    jobs = [(PACS_ARMS[a], s) for s in PACS_FULL.seeds for a in PACS_FULL.arms]
    assert len(jobs) == 18 and len(_collect(PACS_FULL, jobs, tmp_path / "none", archive)) == 18


def test_dsu_advbn_arm_builds_advbn_first_then_the_dsu_layers():
    import timm

    from advbn_aug.recipe.core.train import _build_policy
    from advbn_aug.recipe.pacs.config import PACS_ARMS, PACS_COMPARISONS, PACS_LOO_SKETCH

    arm = PACS_ARMS["dsu_advbn"]
    assert arm.advbn and arm.features == PACS_ARMS["dsu"].features
    policy = _build_policy(PACS_LOO_SKETCH, arm)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=7)
    policy.attach(model)
    try:
        kinds = [type(f).__name__ for f, _ in policy.features]
        assert kinds == ["AdvBNFeature", "DSU", "DSU", "DSU"]
        assert [f.config.layer for f, _ in policy.features[1:]] == ["blocks.1", "blocks.2", "blocks.4"]
    finally:
        policy.detach()
    for key in ("advbn_vs_standard", "dsu_vs_standard", "dsu_advbn_vs_dsu", "dsu_advbn_vs_advbn",
                "advbn_vs_mixstyle"):
        assert key in PACS_COMPARISONS
    assert PACS_LOO_SKETCH.arms == ["pretrained", "standard", "advbn", "dsu", "mixstyle", "dsu_advbn"]
    assert not PACS_ARMS["pretrained"].train


def test_cli_leave_one_out_preset_and_ema_flag():
    from advbn_aug.config import ConfigArgumentError
    from advbn_aug.recipe.pacs.command import pacs_default_folders
    from advbn_aug.recipe.pacs.config import PACS_LOO_SKETCH, ema_decay_for

    cfg = _parse("pacs", "--preset", "leave_one_out_sketch")
    assert cfg == PACS_LOO_SKETCH
    assert pacs_default_folders(False, cfg)[0].as_posix() == "recipes/pacs/results/leave_one_out_sketch"
    assert _parse("pacs", "--preset", "leave_one_out_sketch", "--ema-decay", "none").ema_decay is None
    assert _parse("pacs", "--steps", "200", "--ema-decay", "auto").ema_decay == ema_decay_for(200)
    assert _parse("pacs", "--ema-decay", "0.95").ema_decay == 0.95
    for bad in ("1.5", "fast"):
        with pytest.raises(ConfigArgumentError, match="--ema-decay"):
            _parse("pacs", "--ema-decay", bad)
    with pytest.raises(ConfigArgumentError, match="preset of the PACS recipe"):
        _parse("cifar10", "--preset", "leave_one_out_sketch")
    with pytest.raises(ConfigArgumentError, match="PACS recipe"):
        _parse("cifar10", "--ema-decay", "0.9")


def _loo_runs(ema_shift: dict[int, float]):
    """Leave-one-out sketch results of standard and AdvBN, 3 seeds: AdvBN +2 points on the final weights, +3 on the
    average (both routes); the standard arm's EMA accuracy moved by ``ema_shift[seed]``."""
    runs = []
    for s in range(3):
        base = 0.30 + 0.04 * s
        ema = base + ema_shift[s]
        runs.append(_run("standard", s, {"sketch": base}, ema={"sketch": ema}))
        runs.append(_run("advbn", s, {"sketch": base + 0.02}, {"sketch": base + 0.01}, ema={"sketch": ema + 0.03},
                         ema_adv={"sketch": ema + 0.04}))
    for r in runs:
        for part in (r, r.get("ema", {}), r.get("extras", {}).get("adv_route", {})):
            if part:
                part["val_acc"] = 0.9
    return runs


def test_table_reports_both_weights_and_the_headline_rule(tmp_path):
    from advbn_aug.recipe.pacs.config import PACS_LOO_SKETCH
    from advbn_aug.recipe.pacs.table import HEADLINE_RULE, aggregate_pacs, pacs_headline

    cfg = PACS_LOO_SKETCH.with_overrides(arms=["standard", "advbn"])
    # the average's accuracy varies less over the standard arm's seeds (0.30, 0.34, 0.38 -> 0.32, 0.34, 0.36)
    runs = _loo_runs({0: 0.02, 1: 0.0, 2: -0.02})
    doc = aggregate_pacs(runs, cfg, tmp_path, ["standard", "advbn"])
    h = doc["headline"]
    assert h["weights"] == "ema" and h["seeds"] == [0, 1, 2] and h["std"]["ema"] < h["std"]["final"]
    assert h == pacs_headline([r for r in runs if r["arm"]["name"] == "standard"])  # the standard arm alone
    ev = doc["evidence"]["advbn_vs_standard"]
    assert ev["sketch"]["mean"] == pytest.approx(0.02) and ev["ema_sketch"]["mean"] == pytest.approx(0.03)
    assert ev["ema_sketch_adv"]["mean"] == pytest.approx(0.04) and ev["ema_mean_adv"]["excludes_zero"]
    assert doc["arms"]["advbn"]["ema_val"]["mean"] == pytest.approx(0.9)
    text = (tmp_path / "results.md").read_text()
    assert HEADLINE_RULE in text and "headline: **EMA weights**" in text
    ema_table, final_table = text.index("### Weight average (EMA, decay 0.991"), text.index("### Final weights")
    assert ema_table < final_table  # the headline's table first
    assert "| standard | 3 |" in text and "EMA, sketch, adversarial BN" in text and "| source crossval" in text
    # spread larger on the average: the final weights are the headline; a single seed decides nothing
    doc = aggregate_pacs(_loo_runs({0: -0.02, 1: 0.0, 2: 0.02}), cfg, tmp_path, ["standard", "advbn"])
    assert doc["headline"]["weights"] == "final"
    text = (tmp_path / "results.md").read_text()
    assert text.index("### Final weights") < text.index("### Weight average")
    one = [r for r in _loo_runs({0: 0.0, 1: 0.0, 2: 0.0}) if r["seed"] == 0]
    assert pacs_headline(one)["weights"] is None
    doc = aggregate_pacs(one, cfg, tmp_path, ["standard", "advbn"])
    assert "not decided yet" in (tmp_path / "results.md").read_text()


def test_table_without_weight_averaging_has_no_ema_section(tmp_path):
    from advbn_aug.recipe.pacs.config import PACSConfig
    from advbn_aug.recipe.pacs.table import aggregate_pacs

    runs = [_run("standard", s, {"art_painting": 0.5, "cartoon": 0.3, "sketch": 0.2 + s / 50}) for s in range(2)]
    doc = aggregate_pacs(runs, PACSConfig(arms=["standard"]), tmp_path, ["standard"])
    text = (tmp_path / "results.md").read_text()
    assert doc["headline"]["weights"] is None and "EMA" not in text and "Headline" not in text
    assert not any(k.startswith("ema_") for k in doc["modes"]["standard"])
