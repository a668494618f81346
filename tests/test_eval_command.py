"""``advbn-aug eval`` (advbn_aug.eval.command): clean accuracy alone on a CIFAR-10-format split."""

from __future__ import annotations

import json

import numpy as np
import torch

from advbn_aug.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD, cifar_resnet
from advbn_aug.cli import main
from advbn_aug.eval import predict


def test_corruptions_none_reports_the_clean_accuracy_of_the_split(tmp_path):
    torch.manual_seed(0)
    model = cifar_resnet(20).eval()
    ckpt = tmp_path / "model.pt"
    torch.save(model.state_dict(), ckpt)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 40).astype(np.int64)
    data = tmp_path / "set"
    data.mkdir()
    np.savez(data / "test_lossless1000.npz", x=x, y=y)
    expected = float((predict(model, x, device="cpu", mean=CIFAR_RESNET_MEAN, std=CIFAR_RESNET_STD)[0] == y).mean())
    out = tmp_path / "out"
    assert main(["eval", "--model", "resnet20", "--checkpoint", str(ckpt), "--data-dir", str(data), "--split",
                 "test_lossless", "--corruptions", "none", "--tta", "all", "--device", "cpu",
                 "--output", str(out)]) == 0
    report = json.loads((out / "clean.json").read_text())
    assert report["num_images"] == 40
    assert report["accuracy"]["bn_clean/tta_none"] == expected
    assert set(report["accuracy"]) == {"bn_clean/tta_none", "bn_clean/tta_full", "bn_clean/tta_online"}


def test_corruptions_none_on_a_missing_split_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", "--model", "resnet20", "--data-dir", str(tmp_path), "--split", "test_lossless",
                 "--corruptions", "none", "--device", "cpu", "--output", str(tmp_path / "o")]) == 2
    assert "error" in capsys.readouterr().err
