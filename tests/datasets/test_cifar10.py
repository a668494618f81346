"""CIFAR-10 loading (advbn_aug.datasets.cifar10) from tiny folders in the shared JPEG format; no download."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from advbn_aug.datasets.cifar10 import load_cifar10, shared_data_dir

_COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [128, 128, 128]], dtype=np.uint8)


def _write_split(folder: Path, split: str) -> Path:
    """``<split>_jpeg.npz`` with four uniform 32 x 32 images (labels 3, 2, 1, 0)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    chunks, offsets = [], [0]
    for c in _COLOURS:
        buf = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), c, np.uint8)).save(buf, format="JPEG", quality=95)
        chunks.append(np.frombuffer(buf.getvalue(), np.uint8))
        offsets.append(offsets[-1] + len(chunks[-1]))
    np.savez(folder / f"{split}_jpeg.npz", data=np.concatenate(chunks), offsets=np.array(offsets), y=np.arange(4)[::-1])
    return folder


def test_jpeg_split_decodes_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVBN_CACHE", str(tmp_path / "cache"))
    root = _write_split(tmp_path / "data", "test")
    x, y = load_cifar10("test", root)
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert y.tolist() == [3, 2, 1, 0]
    assert np.abs(x.astype(int) - _COLOURS[:, None, None, :]).max() <= 3, "uniform colours survive the JPEG codec"
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("test_jpeg-")
    np.savez(cached[0], x=x[:1], y=y[:1])  # the second call reads the cache, not the JPEG file
    assert load_cifar10("test", root)[1].tolist() == [3]


def test_cifar10_subfolder_and_lossless_split(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVBN_CACHE", str(tmp_path / "cache"))
    _write_split(tmp_path / "data" / "cifar10", "train")
    assert load_cifar10("train", tmp_path / "data")[0].shape == (4, 32, 32, 3)
    np.savez(tmp_path / "data" / "test_lossless1000.npz", x=np.zeros((2, 32, 32, 3), np.uint8), y=np.array([5, 6]))
    x, y = load_cifar10("test_lossless", tmp_path / "data")
    assert x.shape == (2, 32, 32, 3) and y.dtype == np.int64 and y.tolist() == [5, 6]


def test_errors_name_what_to_pass(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown CIFAR-10 split 'val'; choose one of \('train', 'test', "):
        load_cifar10("val")
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 folder .*missing does not exist: pass an existing folder"):
        load_cifar10("train", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"split 'test_lossless' not found \(looked for test_lossless1000.npz"
                                                r".*pass root=<folder holding it>"):
        load_cifar10("test_lossless", tmp_path)
    monkeypatch.setenv("ADVBN_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"split 'train' not found .*nowhere/cifar10"):
        load_cifar10("train", download=False)


def test_shared_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVBN_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
