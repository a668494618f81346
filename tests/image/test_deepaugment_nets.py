"""The DeepAugment networks (advbn_aug.image.deepaugment_nets): shapes, the saved format and its errors (training and
the augmentation: test_deepaugment.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advbn_aug.image.deepaugment_nets import (
    CAE,
    EDSR,
    ActivationTap,
    build_deepaugment_net,
    load_deepaugment_net,
    save_deepaugment_net,
)


def test_shapes_range_and_taps():
    x = torch.rand(2, 3, 16, 16)
    cae, edsr = CAE(channels=4, latent=2).eval(), EDSR(channels=4, blocks=2).eval()
    with torch.no_grad():
        y, z = cae(x), edsr(x)
    assert y.shape == x.shape and z.shape == (2, 3, 32, 32)
    assert 0 <= float(y.min()) and float(y.max()) <= 1 and 0 <= float(z.min()) and float(z.max()) <= 1
    assert sum(isinstance(m, ActivationTap) for m in cae.modules()) == 7
    assert sum(isinstance(m, ActivationTap) for m in edsr.modules()) == 5  # head, 2 blocks, body end, tail


def test_build_by_name():
    net = build_deepaugment_net("edsr", channels=4, blocks=1)
    assert isinstance(net, EDSR) and net.init_kwargs() == {"channels": 4, "blocks": 1, "res_scale": 0.1}
    with pytest.raises(ValueError, match=r"unknown DeepAugment network 'unet'; choose one of \['cae', 'edsr'\]"):
        build_deepaugment_net("unet")


def test_saved_file_keeps_the_constructor_arguments(tmp_path):
    net = CAE(channels=4, latent=2)
    path = save_deepaugment_net(net, tmp_path / "sub" / "cae.pt")
    blob = torch.load(path, weights_only=True)
    assert blob["arch"] == "cae" and blob["kwargs"] == {"channels": 4, "latent": 2}
    loaded = load_deepaugment_net(path)
    assert not loaded.training and loaded.init_kwargs() == net.init_kwargs()
    with pytest.raises(ValueError, match=r"the weights in .*cae.pt do not fit CAE\(\{'channels': 8\}\)"):
        load_deepaugment_net(path, channels=8)


def test_save_and_load_errors(tmp_path):
    with pytest.raises(TypeError, match="expected a CAE or EDSR, got Linear"):
        save_deepaugment_net(nn.Linear(2, 2), tmp_path / "x.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt is not a DeepAugment weights file"):
        load_deepaugment_net(tmp_path / "list.pt")
