"""visualise.testset: the adversarial-style test set, its variants, and its round trip through `advbn-aug eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from advbn_aug.cli import main
from advbn_aug.visualise.config import TestsetConfig
from advbn_aug.visualise.decoder import DecoderArch, DecoderSource, FeatureDecoder, save_decoder
from advbn_aug.visualise.testset import TESTSET_FILE, make_testset, partners

from .._visualise_tiny import one_thread, smooth_images, tiny_inverter  # noqa: F401 (one_thread: autouse)


def test_partners_are_a_permutation_without_fixed_points():
    for n in (2, 3, 10):
        p = partners(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and not np.any(p == np.arange(n))


def test_variants(tmp_path):
    images = smooth_images(6, seed=7)
    labels = np.array([0, 1, 2, 0, 1, 2])
    inv = tiny_inverter(images)
    common = dict(num_images=6, batch_size=3, progress=False, steps=2, eps=0.5)
    rec = make_testset(TestsetConfig(output="", variant="reconstruct", **common), inverter=inv, images=images,
                       labels=labels)
    adv = make_testset(TestsetConfig(output=str(tmp_path), variant="advbn", **common), inverter=inv, images=images,
                       labels=labels)
    ada = make_testset(TestsetConfig(output="", variant="adain", **common), inverter=inv, images=images,
                       labels=labels)
    assert rec.x.shape == adv.x.shape == ada.x.shape == (6, 32, 32, 3) and adv.x.dtype == np.uint8
    assert rec.correct_features is None and adv.correct_features is not None
    assert not np.array_equal(rec.x, adv.x) and not np.array_equal(rec.x, ada.x)
    expected = inv.decode(inv.encode(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255))
    got = torch.from_numpy(rec.x).permute(0, 3, 1, 2).float() / 255
    assert float((got - expected).abs().max()) <= 0.5 / 255 + 1e-6  # reconstruct = decode(encode(x)), quantised
    z = np.load(tmp_path / TESTSET_FILE)
    assert np.array_equal(z["x"], adv.x) and z["y"].tolist() == labels.tolist()
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["variant"] == "advbn" and meta["num_images"] == 6
    with pytest.raises(ValueError, match="one label per image"):
        make_testset(TestsetConfig(output="", **common), inverter=inv, images=images, labels=labels[:4])


def test_round_trip_through_advbn_aug_eval(tmp_path, shared_data, capsys):
    """make-testset (CLI) on the pretrained ResNet-20, then `advbn-aug eval` reads the set: its clean accuracy is
    the accuracy that make-testset measured on the decoded images."""
    from advbn_aug.datasets.cifar10 import load_cifar10
    from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD
    from advbn_aug.visualise.source import load_encoder, to_tensor

    x, _ = load_cifar10("test_lossless")
    enc = load_encoder("resnet20", None, "layer1", 32)
    torch.manual_seed(0)
    dec = FeatureDecoder(DecoderArch(16, 1, width=8, blocks=1))
    dec.set_feature_stats(enc(to_tensor(x[:64])))
    path = save_decoder(tmp_path / "decoder.pt", dec, DecoderSource("resnet20", None, "layer1", 32,
                                                                     CIFAR_RESNET_MEAN, CIFAR_RESNET_STD))
    out = tmp_path / "set"
    rc = main(["visualise", "make-testset", "--decoder", str(path), "--output", str(out), "--num-images", "12",
               "--batch-size", "6", "--steps", "2", "--no-progress"])
    assert rc == 0
    meta = json.loads((out / "meta.json").read_text())
    assert "advbn-aug eval --model resnet20" in capsys.readouterr().out
    z = np.load(out / TESTSET_FILE)
    assert z["x"].shape == (12, 32, 32, 3) and z["x"].dtype == np.uint8 and len(z["y"]) == 12
    report = tmp_path / "eval"
    rc = main(["eval", "--model", "resnet20", "--data-dir", str(out), "--split", "test_lossless", "--corruptions",
               "brightness", "--severities", "1", "--no-cache", "--no-progress", "--device", "cpu", "--output",
               str(report)])
    assert rc == 0
    result = json.loads((report / "results.json").read_text())
    assert result["num_images"] == 12
    assert result["clean_accuracy"] == pytest.approx(meta["accuracy_decoded"])


def test_cli_errors_name_the_fix(tmp_path, capsys):
    rc = main(["visualise", "make-testset", "--decoder", str(tmp_path / "none.pt"), "--no-progress"])
    assert rc == 2 and "train-decoder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a bad value is a usage error that names the flag
        main(["visualise", "make-testset", "--batch-size", "0"])
    assert e.value.code == 2 and "--batch-size" in capsys.readouterr().err
