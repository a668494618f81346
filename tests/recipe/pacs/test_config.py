"""The PACS recipe's settings (advbn_aug.recipe.pacs.config): validation, the candidate AdvBN layers, the committed
presets, the step budget and EMA decay rules, the arms; and the CIFAR-10 recipe's digests, unchanged by the benchmark
seam. The flags, the crop and the table are tested in test_command.py, test_data.py and test_table.py."""

from __future__ import annotations

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
