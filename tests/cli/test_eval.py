"""``advbn-aug eval`` (advbn_aug.cli.eval): clean accuracy alone on a CIFAR-10-format split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from advbn_aug.cli import main
from advbn_aug.eval import predict
from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD, cifar_resnet


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



def _bad_checkpoint(folder, kind):
    """A file that ``torch.load`` cannot read, or that holds no state_dict of a ResNet-20."""
    import pickle

    path = folder / f"{kind}.pt"
    if kind in ("other_keys", "other_depth", "not_a_dict"):  # valid torch files, but not this model's state_dict
        obj = {"other_keys": lambda: {"foo.weight": torch.zeros(3)}, "not_a_dict": lambda: [1, 2],
               "other_depth": lambda: cifar_resnet(56).state_dict()}[kind]()
        torch.save(obj, path)
        return path
    good = folder / "good.pt"
    torch.save(cifar_resnet(20).state_dict(), good)
    data = good.read_bytes()
    path.write_bytes({
        "empty": b"",
        "truncated": data[: len(data) // 2],  # an interrupted copy: the zip archive lacks its central directory
        "random": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "text": b"hello world\n",
        "plain_pickle": pickle.dumps({"x": 1}, protocol=2),  # a pickle, but not written by torch.save
    }[kind])
    return path


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "text", "plain_pickle", "other_keys",
                                  "other_depth", "not_a_dict"])
def test_unreadable_checkpoint_is_a_clear_error_naming_the_file(tmp_path, capsys, kind):
    """Issue 22 item 12: an empty, truncated or garbage --checkpoint exits 2 with a message naming the file and what
    to do, not a raw EOFError / zip RuntimeError / KeyError traceback."""
    bad = _bad_checkpoint(tmp_path, kind)
    out = tmp_path / "out"
    (tmp_path / "set").mkdir()
    np.savez(tmp_path / "set" / "test_lossless1000.npz", x=np.zeros((2, 32, 32, 3), np.uint8), y=np.zeros(2, np.int64))
    for extra in ([], ["--corruptions", "none", "--data-dir", str(tmp_path / "set")], ["--bn", "both"]):
        assert main(["eval", "--model", "resnet20", "--checkpoint", str(bad), "--device", "cpu", "--no-progress",
                     "--output", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("advbn-aug eval: error: ") and str(bad) in err, err
        assert "Traceback" not in err and not out.exists()
    msg = err.lower()
    if kind in ("other_keys", "other_depth"):
        assert "--model" in msg and ("missing" in msg or "unexpected" in msg), msg
    else:
        assert {"empty": "is empty", "truncated": "is truncated", "not_a_dict": "holds a list"}.get(
            kind, "not a pytorch checkpoint") in msg, msg
        assert "torch.save(model.state_dict()" in msg  # the fix
