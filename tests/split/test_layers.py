"""advbn_aug.split.layers: which module a layer name or a feature_info index means."""

import pytest
import timm
import torch
import torchvision

from advbn_aug.split import layer_candidates, resolve_layer


def test_resolve_by_name_and_feature_info_index():
    model = timm.create_model("resnet18")
    assert resolve_layer(model, "layer2") == "layer2"
    assert resolve_layer(model, 1) == "layer1"
    assert resolve_layer(model, "1") == "layer1"
    assert resolve_layer(model, -1) == "layer4"
    assert layer_candidates(model)[:5] == ["act1", "layer1", "layer2", "layer3", "layer4"]


def test_unknown_layer_message_lists_candidates():
    model = torchvision.models.resnet18()
    with pytest.raises(ValueError, match=r"layer 'layer9' is not a module of ResNet.*layer1"):
        resolve_layer(model, "layer9")


def test_feature_info_index_out_of_range_names_the_levels():
    model = timm.create_model("resnet18")
    with pytest.raises(ValueError, match=r"feature_info index 7 is out of range: this model has 5 feature levels "
                                         r"\(act1, layer1, layer2, layer3, layer4\); pass an index in 0\.\.4"):
        resolve_layer(model, 7)
    with pytest.raises(ValueError, match="index in 0..4"):
        resolve_layer(model, "-6")


def test_typo_suggests_close_names_and_the_root_is_not_a_layer():
    model = torchvision.models.resnet18()
    with pytest.raises(ValueError, match=r"Did you mean 'layer1'.*Pass a dotted module name"):
        resolve_layer(model, "layr1")
    with pytest.raises(ValueError, match="layer '' is not a module of ResNet"):
        resolve_layer(model, "")
    # no feature_info: an index is a name like any other
    with pytest.raises(ValueError, match="layer 1 is not a module of ResNet"):
        resolve_layer(model, 1)
    assert resolve_layer(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.ReLU()), "1") == "1"


def test_candidates_stop_at_the_depth():
    model = torchvision.models.resnet18()
    assert layer_candidates(model, depth=1) == [name for name, _ in model.named_children()]
    assert "layer1.0" in layer_candidates(model) and "layer1.0.conv1" not in layer_candidates(model)
