"""RecipeConfig: the frozen prefix follows the AdvBN layer, bad settings are named."""

from __future__ import annotations

import pytest

from advbn_aug.recipe_config import RecipeConfig, prefix_names


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
