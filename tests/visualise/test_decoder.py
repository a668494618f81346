"""visualise.decoder / source / inverter: shapes, the decoder file, and the errors for bad inputs."""

from __future__ import annotations

import pytest
import torch

from advbn_aug.visualise.decoder import (
    DecoderArch,
    DecoderSource,
    FeatureDecoder,
    decoder_arch_for,
    load_decoder,
    save_decoder,
)
from advbn_aug.visualise.inverter import FeatureInverter, open_inverter
from advbn_aug.visualise.source import LayerEncoder, read_image_folder, to_tensor, to_uint8

from .._visualise_tiny import MEAN, STD, one_thread, smooth_images, tiny_encoder, tiny_net  # noqa: F401 (one_thread: autouse)


def test_decoder_upsamples_by_the_scale_into_unit_range():
    dec = FeatureDecoder(DecoderArch(in_channels=8, scale=4, width=16, blocks=1))
    with torch.no_grad():
        out = dec(torch.randn(2, 8, 5, 5) * 3)
    assert out.shape == (2, 3, 20, 20)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(ValueError, match="8, h, w"):
        dec(torch.randn(2, 4, 5, 5))


def test_arch_for_feature_shapes():
    assert decoder_arch_for((16, 32, 32), 32) == DecoderArch(16, 1)
    assert decoder_arch_for((64, 16, 16), 64, width=32) == DecoderArch(64, 4, 32)
    with pytest.raises(ValueError, match="powers of 2"):
        decoder_arch_for((16, 11, 11), 32, layer="layer 'x'")


def test_encoder_stops_at_the_layer_and_names_problems():
    enc = tiny_encoder()
    assert enc.feature_shape() == (8, 16, 16)
    head_calls = []
    enc.model.head.register_forward_hook(lambda *a: head_calls.append(1))
    enc(to_tensor(smooth_images(2)))
    assert head_calls == []  # nothing after the layer ran
    with pytest.raises(ValueError, match="layer1"):  # a wrong name lists the candidates
        LayerEncoder(tiny_net(), "layer_one", MEAN, STD, 32)
    with pytest.raises(ValueError, match="16 px .* works at 32 px"):
        enc(to_tensor(smooth_images(1, size=16)))


def test_decoder_file_round_trip_and_errors(tmp_path):
    dec = FeatureDecoder(DecoderArch(8, 2, width=8, blocks=1))
    dec.set_feature_stats(torch.rand(4, 8, 16, 16) * 5)
    src = DecoderSource("tiny", None, "layer1", 32, MEAN, STD)
    path = save_decoder(tmp_path / "d" / "decoder.pt", dec, src, psnr=21.5)
    back, src2, info = load_decoder(path)
    assert src2 == src and info["psnr"] == 21.5
    f = torch.rand(1, 8, 16, 16)
    assert torch.equal(back(f), dec.eval()(f))
    with pytest.raises(FileNotFoundError, match="train-decoder"):
        load_decoder(tmp_path / "missing.pt")
    torch.save({"step": 3}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="not a decoder file"):
        load_decoder(tmp_path / "last.pt")


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


def test_image_folder_labels_and_sizes(tmp_path):
    from PIL import Image

    imgs = smooth_images(3, size=40)
    for i, cls in enumerate(("cat", "dog", "dog")):
        (tmp_path / cls).mkdir(exist_ok=True)
        Image.fromarray(imgs[i][:, :30]).save(tmp_path / cls / f"{i}.png")  # 40x30: resized and centre-cropped
    x, y = read_image_folder(tmp_path, 16)
    assert x.shape == (3, 16, 16, 3) and x.dtype.name == "uint8"
    assert y.tolist() == [0, 1, 1]
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        read_image_folder(tmp_path / "absent", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        read_image_folder(tmp_path / "empty", 16)
    assert to_uint8(to_tensor(x)).tolist() == x.tolist()
