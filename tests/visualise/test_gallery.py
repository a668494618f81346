"""visualise.gallery: make_grid's rows, PNG files and HTML page, the image size check, a second checkpoint's rows."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from advbn_aug.visualise.config import GridConfig
from advbn_aug.visualise.gallery import make_grid

from .._visualise_tiny import one_thread, smooth_images, tiny_inverter  # noqa: F401 (one_thread: autouse)


def _grid(tmp_path, n: int = 3, **kw):
    images = smooth_images(n + 1, seed=5)
    inv = tiny_inverter(images)
    cfg = GridConfig(output=str(tmp_path), num_images=n, eps=(0.5, 1.1), steps=(2,), tile_size=16, progress=False,
                     **kw)
    return make_grid(cfg, inverter=inv, images=images[:n], labels=np.array([0, 1, 2][:n])), inv, images


def test_grid_files_and_rows(tmp_path):
    res, _, _ = _grid(tmp_path)
    keys = [r.key for r in res.rows]
    assert keys == ["input", "reconstruction", "advbn_ref_eps0.5_steps2", "advbn_ref_eps1.1_steps2", "mixstyle",
                    "dsu", "corrupted", "corrupted_reconstruction", "style", "adain"]
    pngs = sorted(p.name for p in (tmp_path / "rows").glob("*.png"))
    assert len(pngs) == len(keys) and pngs[0] == "00_input.png" and pngs[-1] == "09_adain.png"
    assert (tmp_path / "grid.png").stat().st_size > 0
    page = (tmp_path / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == len(keys) + 1 and srcs[0] == "grid.png"
    assert all((tmp_path / s).is_file() for s in srcs)
    assert len(re.findall(r"<figcaption>", page)) == len(keys) + 1
    summary = json.loads((tmp_path / "grid.json").read_text())
    assert [r["key"] for r in summary["rows"]] == keys
    assert "psnr_db" in summary["rows"][1] and "12.50 dB" in summary["intro"]
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as im:  # 10 rows of 16 px tiles with 4 px gaps
        assert im.size[1] == 10 * (16 + 4) + 4
    assert res.rows[0].images.shape == (3, 32, 32, 3) and res.rows[8].images.shape == (1, 32, 32, 3)


def test_image_size_mismatch_is_named(tmp_path):
    images = smooth_images(3)
    inv = tiny_inverter(images)
    with pytest.raises(ValueError, match="16x16 px but the decoder works at 32 px"):
        make_grid(GridConfig(output=str(tmp_path), num_images=2), inverter=inv, images=smooth_images(2, size=16),
                  labels=np.array([0, 1]))


def test_second_checkpoint_gets_its_own_advbn_rows(tmp_path, shared_data):
    """--ft-checkpoint: the AdvBN rows of a second model (same architecture) follow the reference rows; the caption
    says whether its prefix (which the decoder inverts) is the reference model's."""
    from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD, load_pretrained_cifar_resnet
    from advbn_aug.visualise.decoder import DecoderArch, DecoderSource, FeatureDecoder, save_decoder

    path = save_decoder(tmp_path / "decoder.pt", FeatureDecoder(DecoderArch(16, 1, width=8, blocks=1)),
                        DecoderSource("resnet20", None, "layer1", 32, CIFAR_RESNET_MEAN, CIFAR_RESNET_STD))
    net = load_pretrained_cifar_resnet(20)
    with torch.no_grad():
        net.linear.weight.mul_(-1)  # a different suffix, the same prefix (what AdvBN fine-tuning leaves)
    torch.save(net.state_dict(), tmp_path / "ft.pth")
    with torch.no_grad():
        net.conv1.weight.mul_(0.5)  # now the prefix differs too
    torch.save(net.state_dict(), tmp_path / "other.pth")
    cfg = dict(decoder=str(path), num_images=2, eps=(1.1,), steps=(1,), tile_size=16, progress=False, output="")
    rows = make_grid(GridConfig(ft_checkpoint=str(tmp_path / "ft.pth"), **cfg)).rows
    keys = [r.key for r in rows]
    assert keys[2:4] == ["advbn_ref_eps1.1_steps1", "advbn_ft_eps1.1_steps1"]
    assert "Same prefix" in rows[3].caption and "ft.pth" in rows[3].title
    rows = make_grid(GridConfig(ft_checkpoint=str(tmp_path / "other.pth"), **cfg)).rows
    assert "prefix differs" in rows[3].caption
