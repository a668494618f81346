"""CIFAR ResNets (advbn_aug.models.cifar_resnet): the architecture and the pretrained-weights loader."""

from __future__ import annotations

import pytest
import torch

from advbn_aug.models.cifar_resnet import CifarResNet, cifar_resnet, load_pretrained_cifar_resnet, pretrained_keys


def test_architecture_of_resnet20():
    model = cifar_resnet(20, num_classes=7)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [3, 3, 3]
    assert sum(p.numel() for p in model.parameters()) == 269_722 - 65 * 3  # akamaster's 0.27M; head 64x7 + 7
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    assert [len(s) for s in (cifar_resnet(8).layer1, cifar_resnet(56).layer2)] == [1, 9]


def test_option_a_shortcut_has_no_parameters():
    block = cifar_resnet(20).layer2[0]
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    x = torch.rand(1, 16, 8, 8)
    y = block.shortcut(x)
    assert y.shape == (1, 32, 4, 4)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert torch.equal(y[:, :8], torch.zeros(1, 8, 4, 4)) and torch.equal(y[:, 24:], torch.zeros(1, 8, 4, 4))


@pytest.mark.parametrize("depth", [2, 7, 21])
def test_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match=rf"depth must be 6n\+2 with n >= 1 \(20, 32, 44, 56, 110\), got {depth}"):
        CifarResNet(depth)


def test_load_pretrained_from_a_path(tmp_path):
    torch.manual_seed(0)
    src = cifar_resnet(20)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "r20.th")
    model = load_pretrained_cifar_resnet(20, tmp_path / "r20.th")
    for (k, a), b in zip(src.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(FileNotFoundError, match=r"weights file .*nope.th does not exist: pass the path of resnet20-"):
        load_pretrained_cifar_resnet(20, tmp_path / "nope.th")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: \"layer1.3.conv1.weight\""):
        load_pretrained_cifar_resnet(56, tmp_path / "r20.th")


def test_default_weights_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"no pretrained weights known for ResNet-32; known depths: \[20, 56\]"):
        load_pretrained_cifar_resnet(32)
    monkeypatch.setattr("advbn_aug.datasets.cifar10.shared_data_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"resnet20-12fca82f.th\) or place the shared data folder"):
        load_pretrained_cifar_resnet(20)


def test_shared_weights_fit_the_architecture(shared_data):
    # the akamaster file predates BatchNorm's num_batches_tracked, which a strict load does not require
    keys = [k for k in cifar_resnet(20).state_dict() if not k.endswith("num_batches_tracked")]
    assert pretrained_keys(20) == keys
    model = load_pretrained_cifar_resnet(20)
    assert not torch.equal(model.layer1[0].bn1.running_var, torch.ones(16)), "trained statistics"
