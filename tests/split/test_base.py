"""advbn_aug.split.base: the staleness check every split shares (verify / refresh)."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from advbn_aug.split import split_model
from advbn_aug.split.base import direct_parameters, training_modes


@pytest.mark.parametrize("mode", ["fx", "hook"])
def test_verify_names_replaced_modules(mode):
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    split = split_model(model, "layer1", mode)
    split.verify()
    model.reset_classifier(3)
    with pytest.raises(RuntimeError, match=r"changed after it was split at 'layer1': .*'fc' replaced \(Linear -> "
                                           r"Linear\).*adv.detach\(\); attach again"):
        split.verify()


def test_verify_sync_batchnorm_and_refresh():
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    split = split_model(model, "layer1", "fx")
    nn.SyncBatchNorm.convert_sync_batchnorm(model)
    with pytest.raises(RuntimeError, match=r"'bn1' replaced \(BatchNorm2d -> SyncBatchNorm\)"):
        split.verify()

    model = torchvision.models.resnet18(num_classes=4)
    split = split_model(model, "layer1", "hook")
    bn = model.layer2[0].bn1
    bn.__class__ = type("MyBatchNorm2d", (nn.BatchNorm2d,), {})
    bn.extra = nn.Identity()
    with pytest.raises(RuntimeError, match=r"'layer2.0.bn1' changed class \(BatchNorm2d -> MyBatchNorm2d\).*"
                                           r"'layer2.0.bn1.extra' added"):
        split.verify()
    split.refresh()  # the caller's own in-place change
    split.verify()
    del model.layer2[0].bn1.extra
    with pytest.raises(RuntimeError, match="'layer2.0.bn1.extra' removed"):
        split.verify()


def test_training_modes_sets_each_module_only_and_restores_on_error():
    model = nn.Sequential(nn.Sequential(nn.BatchNorm1d(2)), nn.Dropout())
    model.train()
    with pytest.raises(KeyError):
        with training_modes({model[0]: False, model[1]: False}):
            assert not model[0].training and not model[1].training
            assert model[0][0].training and model.training, "children and parents keep their flags"
            raise KeyError("boom")
    assert all(m.training for m in model.modules())


def test_direct_parameters_extra_first_each_once():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    outer = nn.Sequential(a)
    outer.scale = nn.Parameter(torch.ones(1))
    params = direct_parameters([outer, a, b, a], extra=[b.bias, outer.scale])
    assert [id(p) for p in params] == [id(p) for p in (b.bias, outer.scale, a.weight, a.bias, b.weight)]


def test_repr_and_close_of_a_split():
    model = torchvision.models.resnet18(num_classes=4)
    split = split_model(model, "layer1", "fx")
    assert repr(split).startswith("FxSplit(ResNet at 'layer1': ") and "prefix /" in repr(split)
    assert split.close() is None
    split.verify()  # closing changes no module
