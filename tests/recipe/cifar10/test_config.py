"""The recipe's configuration (advbn_aug.recipe.cifar10.config): the frozen prefix follows the AdvBN layer, bad settings
are named, arms validate their options, the YAML files match the built-in presets and arms."""

from __future__ import annotations

from pathlib import Path

import pytest

from advbn_aug.recipe.cifar10.config import RecipeConfig, prefix_names

REPO = Path(__file__).resolve().parents[3]


def test_prefix_ends_at_the_advbn_stage():
    assert prefix_names("layer1") == ("conv1", "bn1", "layer1")
    assert prefix_names("layer2") == ("conv1", "bn1", "layer1", "layer2")
    assert prefix_names("layer3")[-1] == "layer3"


@pytest.mark.parametrize("layer", ["layer2.1", "linear", "conv1", "layer4"])
def test_recipe_rejects_a_layer_that_is_not_a_stage(layer):
    with pytest.raises(ValueError, match="CIFAR ResNet stages"):
        RecipeConfig(advbn={"layer": layer, "eps": 1.1, "step_size": 0.2, "steps": 6})


@pytest.mark.parametrize("kw, match", [({"model": "resnet18"}, "resnet20 or resnet56"), ({"steps": 0}, "steps"),
                                       ({"seeds": [1, 1]}, "distinct"), ({"arms": []}, "arms is empty"),
                                       ({"lr": 0.0}, "lr > 0")])
def test_bad_settings_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        RecipeConfig(**kw)


def test_round_trip_through_a_dict():
    cfg = RecipeConfig(model="resnet56", seeds=[3], advbn={"layer": "layer2", "eps": 0.5, "step_size": 0.2,
                                                           "steps": 3})
    assert RecipeConfig.from_dict(cfg.to_dict()) == cfg


# ---------------------------------------------------------------------------------------------- per-arm AdvBN options
def test_arm_advbn_options_reach_the_policy_and_round_trip(tmp_path):
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS
    from advbn_aug.recipe.core.config import ArmConfig, load_arms
    from advbn_aug.recipe.core.train import _build_policy

    arm = ArmConfig("advbn_fgsm", advbn=True, advbn_options={"steps": 1, "random_start": True, "step_size": 1.375})
    arm.to_yaml(tmp_path / "advbn_fgsm.yaml")
    loaded = load_arms(tmp_path, DEFAULT_ARMS)["advbn_fgsm"]
    assert loaded == arm
    ((feature, _),) = _build_policy(RecipeConfig(), loaded).features
    c = feature.advbn.config
    assert (c.steps, c.random_start, c.step_size, c.eps, c.layer) == (1, True, 1.375, 1.1, "layer1")


def test_arm_without_options_keeps_its_stored_form():
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS

    # finished runs store arm.to_dict(); the form without advbn_options must not change, or they would all rerun
    assert DEFAULT_ARMS["advbn"].to_dict() == {"name": "advbn", "description": DEFAULT_ARMS["advbn"].description,
                                               "augmix": False, "deepaugment": False, "advbn": True, "train": True}


@pytest.mark.parametrize("kw, match", [
    ({"advbn": False, "advbn_options": {"steps": 1}}, "sets advbn_options but not advbn: true"),
    ({"advbn": True, "advbn_options": {"layer": "layer2"}}, "shared by every arm"),
    ({"advbn": True, "advbn_options": {"stepz": 1}}, "unknown AdvBNConfig keys"),
    ({"advbn": True, "advbn_options": {"attack_every": 0}}, "attack_every must be"),
])
def test_bad_arm_advbn_options_are_named(kw, match):
    from advbn_aug.recipe.core.config import ArmConfig

    with pytest.raises(ValueError, match=match):
        ArmConfig("x", **kw)


def test_recipe_yaml_files_match_builtins():
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS, FULL, SHORT, TINY
    from advbn_aug.recipe.core.config import load_arms

    folder = REPO / "recipes" / "cifar10" / "configs"
    if not folder.is_dir():
        pytest.skip("recipes/cifar10/configs not in this checkout")
    arms = load_arms(folder / "arms", DEFAULT_ARMS)
    assert {k: v.to_dict() for k, v in arms.items()} == {k: v.to_dict() for k, v in DEFAULT_ARMS.items()}
    assert RecipeConfig.from_yaml(folder / "full.yaml") == FULL
    assert RecipeConfig.from_yaml(folder / "tiny.yaml") == TINY
    assert RecipeConfig.from_yaml(folder / "short.yaml") == SHORT


def test_arm_features_are_validated():
    from advbn_aug.recipe.core.config import ArmConfig

    with pytest.raises(ValueError, match="type one of"):
        ArmConfig("x", features=[{"type": "advbn", "layer": "layer1"}])
    with pytest.raises(ValueError, match="p must be a probability"):
        ArmConfig("x", features=[{"type": "mixstyle", "layer": "layer1", "p": 2}])
    assert "features" not in ArmConfig("x").to_dict()  # runs stored before the field existed still match
