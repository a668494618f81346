"""Benchmark file readers (CIFAR-10-C arrays, ImageNet-C folders) and the generated-set cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from advbn_aug.eval.corruptions import corrupt
from advbn_aug.eval.datasets import ImageNetCFolder, corrupted_set, load_cifar10c


def _write_cifar10c(root, n=4, size=8, per_severity_labels=True):
    x = np.zeros((5 * n, size, size, 3), np.uint8)
    for s in range(5):
        x[s * n:(s + 1) * n] = np.arange(n, dtype=np.uint8)[:, None, None, None] + 10 * (s + 1)
    np.save(root / "fog.npy", x)
    labels = np.arange(n) % 3
    np.save(root / "labels.npy", np.tile(labels, 5) if per_severity_labels else labels)
    return labels


@pytest.mark.parametrize("tiled", [True, False])
def test_load_cifar10c_reads_one_severity_block(tmp_path, tiled):
    labels = _write_cifar10c(tmp_path, per_severity_labels=tiled)
    x, y = load_cifar10c(tmp_path, "fog", 3)
    assert x.shape == (4, 8, 8, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0, 0, 0], [30, 31, 32, 33])
    np.testing.assert_array_equal(y, labels)
    x2, y2 = load_cifar10c(tmp_path, "fog", 5, num_images=2)
    np.testing.assert_array_equal(x2[:, 0, 0, 0], [50, 51])
    assert len(y2) == 2


def test_load_cifar10c_errors(tmp_path):
    _write_cifar10c(tmp_path)
    with pytest.raises(FileNotFoundError, match="snow.npy not found.*folder holding"):
        load_cifar10c(tmp_path, "snow", 1)
    with pytest.raises(ValueError, match="unknown corruption 'foggy'"):
        load_cifar10c(tmp_path, "foggy", 1)
    with pytest.raises(ValueError, match="severity must be an integer in 1..5"):
        load_cifar10c(tmp_path, "fog", 6)
    np.save(tmp_path / "fog.npy", np.zeros((7, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(7, 8, 8, 3\).*expected uint8 \(5 \* n, H, W, 3\)"):
        load_cifar10c(tmp_path, "fog", 1)


def test_imagenet_c_folder(tmp_path):
    for cls, value in (("n02", 200), ("n01", 100)):
        d = tmp_path / "contrast" / "2" / cls
        d.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((6, 6, 3), value + i, np.uint8)).save(d / f"img{i}.JPEG", quality=100)
        (d / "notes.txt").write_text("not an image")
    ds = ImageNetCFolder(tmp_path, "contrast", 2)
    assert len(ds) == 4 and ds.class_to_idx == {"n01": 0, "n02": 1}
    img, label = ds[2]
    assert img.shape == (6, 6, 3) and img.dtype == np.uint8 and label == 1
    assert abs(int(img.mean()) - 200) <= 2
    assert len(ImageNetCFolder(tmp_path, "contrast", 2, num_images=3)) == 3
    with pytest.raises(FileNotFoundError, match="contrast/3 not found"):
        ImageNetCFolder(tmp_path, "contrast", 3)


def test_corrupted_set_is_cached_and_keyed(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    a, hit = corrupted_set(x, "gaussian_noise", 2, seed=4, cache_dir=tmp_path, chunk_size=2)
    assert not hit and len(list(tmp_path.glob("gaussian_noise-s2-*.npy"))) == 1
    np.testing.assert_array_equal(a, corrupt(x, "gaussian_noise", 2, seed=4))  # chunking does not matter
    b, hit = corrupted_set(x, "gaussian_noise", 2, seed=4, cache_dir=tmp_path)
    assert hit and np.array_equal(a, b)
    _, hit = corrupted_set(x, "gaussian_noise", 2, seed=5, cache_dir=tmp_path)
    assert not hit  # the seed is part of the key
    _, hit = corrupted_set(x[:4], "gaussian_noise", 2, seed=4, cache_dir=tmp_path)
    assert not hit  # so are the clean images
    _, hit = corrupted_set(x, "gaussian_noise", 2, seed=4, cache_dir=tmp_path, use_cache=False)
    assert not hit
