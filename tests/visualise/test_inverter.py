"""visualise.inverter: a decoder is refused for another layer; open_inverter checks the request against the file."""

from __future__ import annotations

import pytest

from advbn_aug.visualise.decoder import DecoderArch, DecoderSource, FeatureDecoder, save_decoder
from advbn_aug.visualise.inverter import FeatureInverter, open_inverter

from .._visualise_tiny import one_thread, tiny_encoder  # noqa: F401 (one_thread: autouse)


def test_inverter_refuses_a_decoder_for_another_layer():
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="trained for this model and layer"):
        FeatureInverter(enc, FeatureDecoder(DecoderArch(16, 2)))  # layer1 has 8 channels


def test_open_inverter_checks_the_request(tmp_path, shared_data):
    dec = FeatureDecoder(DecoderArch(16, 1, width=8, blocks=1))
    from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD

    path = save_decoder(tmp_path / "decoder.pt", dec, DecoderSource("resnet20", None, "layer1", 32,
                                                                     CIFAR_RESNET_MEAN, CIFAR_RESNET_STD))
    inv, src = open_inverter(str(path))
    assert inv.layer == "layer1" and inv.img_size == 32 and src.model == "resnet20"
    with pytest.raises(ValueError, match="trained for 'layer1'.*--layer"):
        open_inverter(str(path), layer="layer2")
    with pytest.raises(ValueError, match="not a module of CifarResNet"):
        open_inverter(str(path), layer="layer_1")
    with pytest.raises(ValueError, match="image size 64"):
        open_inverter(str(path), img_size=64)
    with pytest.raises(ValueError, match="model 'resnet56'"):
        open_inverter(str(path), model="resnet56")
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        open_inverter(str(path), checkpoint=str(tmp_path / "nope.pth"))
