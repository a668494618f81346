"""PACS reader: the shared npz files (counts from ../shared/data/pacs/SOURCE.md), a user's folder, the errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advbn_aug.datasets.pacs import (
    PACS_CLASSES,
    PACS_DOMAINS,
    PACSConcat,
    load_pacs,
    pacs_leave_one_out,
    pacs_single_source,
    resolve_pacs_root,
)

COUNTS = {"photo": 1670, "art_painting": 2048, "cartoon": 2344, "sketch": 3929}
SPLITS = {"photo": (1499, 171), "art_painting": (1840, 208), "cartoon": (2107, 237), "sketch": (3531, 398)}


@pytest.mark.parametrize("domain", PACS_DOMAINS)
def test_shared_counts_and_splits(pacs_root, domain):
    ds = load_pacs(domain, root=pacs_root)
    assert ds.fmt == "npz" and len(ds) == COUNTS[domain] == len(ds.targets)
    assert set(ds.targets) == set(range(7))
    n_train, n_val = SPLITS[domain]
    train, val, test = (load_pacs(domain, s, root=pacs_root) for s in ("train", "crossval", "test"))
    assert (len(train), len(val), len(test)) == (n_train, n_val, COUNTS[domain])
    assert sorted(test.names) == sorted(ds.names)
    assert not set(train.names) & set(val.names)
    # labels follow the class folder of every listed path
    for part in (train, val, test):
        assert all(PACS_CLASSES[t] == n.split("/")[0] for t, n in zip(part.targets, part.names))


def test_sketch_class_counts_and_art_painting_quirk(pacs_root):
    counts = np.bincount(load_pacs("sketch", root=pacs_root).targets, minlength=7)
    assert counts[PACS_CLASSES.index("house")] == 80 and counts[PACS_CLASSES.index("person")] == 160
    train = load_pacs("art_painting", "train", root=pacs_root)
    val = load_pacs("art_painting", "crossval", root=pacs_root)
    assert len(set(train.names) | set(val.names)) == 2047
    # line 1 of art_painting_crossval_kfold.txt lists label 0 for a dog: the folder wins
    first = (pacs_root / "splits" / "art_painting_crossval_kfold.txt").read_text().splitlines()[0]
    assert first.endswith(" 0") and "/dog/" in first
    assert val.names[0] == "dog/pic_225.jpg" and val.targets[0] == 0
    assert min(val.targets) == 0 and max(val.targets) == 6


def test_items_and_transform(pacs_root):
    ds = load_pacs("photo", "crossval", root=pacs_root)
    img, y = ds[0]
    assert isinstance(img, Image.Image) and img.size == (128, 128) and img.mode == "RGB" and y == ds.targets[0]
    from timm.data import create_transform

    ds.transform = create_transform(128, mean=(0.5,) * 3, std=(0.5,) * 3)
    x, _ = ds[1]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 128, 128)


def test_protocols(pacs_root):
    train, val, test = pacs_leave_one_out("sketch", root=pacs_root)
    assert isinstance(train, PACSConcat) and len(train) == 1499 + 1840 + 2107 and len(val) == 171 + 208 + 237
    assert len(test) == 3929 and len(train.targets) == len(train)
    train.transform = lambda im: np.asarray(im).shape
    assert train[len(train) - 1][0] == (128, 128, 3) and all(d.transform is not None for d in train.datasets)
    src, targets = pacs_single_source("photo", root=pacs_root)
    assert len(src) == 1670 and {d: len(t) for d, t in targets.items()} == {
        d: n for d, n in COUNTS.items() if d != "photo"
    }
    with pytest.raises(ValueError, match="domain"):
        pacs_leave_one_out("clipart", root=pacs_root)
    with pytest.raises(ValueError, match="split"):
        load_pacs("photo", "val", root=pacs_root)


def _user_pacs(tmp_path: Path) -> Path:
    root = tmp_path / "PACS" / "kfold"
    files = {"dog": ["a.jpg", "b.png"], "horse": ["c.png"], "person": ["d.jpg", "e.jpg"]}
    for i, (cls, names) in enumerate(files.items()):
        (root / "cartoon" / cls).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (20, 12), (40 * i, 0, 0)).save(root / "cartoon" / cls / name)
    (root / "cartoon" / "dog" / "notes.txt").write_text("not an image")
    labels = tmp_path / "PACS" / "pacs_label"
    labels.mkdir()
    (labels / "cartoon_train_kfold.txt").write_text(
        "cartoon/dog/b.png 0\ncartoon/person/e.jpg 7\ncartoon/horse/c.png 5\n"
    )
    (labels / "cartoon_crossval_kfold.txt").write_text("cartoon/dog/a.jpg 4\n")  # wrong label: dog is 1
    return root


def test_user_folder(tmp_path):
    root = _user_pacs(tmp_path)
    assert resolve_pacs_root(tmp_path / "PACS") == root
    ds = load_pacs("cartoon", root=tmp_path / "PACS")
    assert ds.fmt == "folder" and len(ds) == 5
    assert ds.names == ["dog/a.jpg", "dog/b.png", "horse/c.png", "person/d.jpg", "person/e.jpg"]
    assert ds.targets == [0, 0, 4, 6, 6]
    img, y = ds[2]
    assert img.size == (20, 12) and img.mode == "RGB" and y == 4
    train = load_pacs("cartoon", "train", root=root)  # split lists found in ../pacs_label
    assert train.names == ["dog/b.png", "person/e.jpg", "horse/c.png"] and train.targets == [0, 6, 4]
    with pytest.raises(ValueError, match="disagrees"):
        load_pacs("cartoon", "crossval", root=root)
    with pytest.raises(FileNotFoundError, match="cartoon_test_kfold.txt"):
        load_pacs("cartoon", "test", root=root)
    with pytest.raises(FileNotFoundError, match="photo"):
        load_pacs("photo", root=root)


def test_not_found_messages(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVBN_DATA", str(tmp_path / "nothing_here"))
    with pytest.raises(FileNotFoundError) as err:
        load_pacs("photo")
    msg = str(err.value)
    assert "ADVBN_DATA" in msg and "root=" in msg and "no automatic download" in msg and "nothing_here" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_pacs_root(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no PACS domain.*root="):
        resolve_pacs_root(tmp_path / "empty")
