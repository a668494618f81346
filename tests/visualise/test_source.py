"""visualise.source: the encoder that stops at the layer, the image folder reader and the uint8/tensor conversions."""

from __future__ import annotations

import pytest

from advbn_aug.visualise.source import LayerEncoder, read_image_folder, to_tensor, to_uint8

from .._visualise_tiny import MEAN, STD, one_thread, smooth_images, tiny_encoder, tiny_net  # noqa: F401 (one_thread: autouse)


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
