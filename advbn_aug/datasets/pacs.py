"""PACS (photo, art painting, cartoon, sketch; 7 classes) as timm-compatible datasets.

The reader takes a path the user gives, else the shared data folder's ``pacs/`` (``../shared/data`` or
``$ADVBN_DATA``); PACS has no download. Two layouts are detected per domain:

* the shared format: ``<domain>.npz`` (WebP bytes at 128 px, ``data``/``offsets``/``y``/``names``, decoded lazily);
* the original PACS folder: ``<domain>/<class>/<file>`` (227 px images, e.g. the official ``kfold/`` folder).

Splits come from the official lists ``<domain>_{train,crossval,test}_kfold.txt`` (``domain/class/file label``,
labels 1..7), looked up in ``splits/`` or ``pacs_label/`` next to the images. Labels are always taken from the class
folder in the path: line 1 of ``art_painting_crossval_kfold.txt`` says ``0`` for a dog, which a reader using the
listed label minus 1 would turn into ``-1``. Any other disagreement between list and folder raises.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from advbn_aug.datasets.cifar10 import shared_data_dir

__all__ = [
    "PACS_DOMAINS", "PACS_CLASSES", "PACS_SPLITS", "PACSDomain", "PACSConcat", "resolve_pacs_root", "load_pacs",
    "pacs_single_source", "pacs_leave_one_out", "find_split_file", "read_split_file",
]

PACS_DOMAINS = ("photo", "art_painting", "cartoon", "sketch")
PACS_CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")
PACS_SPLITS = ("all", "train", "crossval", "test")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
_SPLIT_DIRS = ("splits", "pacs_label", ".", "../pacs_label", "../splits")
_WHERE = (
    "PACS has no automatic download: get it from https://domaingeneralization.github.io/ (the original 227 px "
    "images as <domain>/<class>/<file> plus the <domain>_<split>_kfold.txt lists) and pass root=<that folder>, or "
    "set $ADVBN_DATA to a data folder holding a pacs/ subfolder (<domain>.npz files and splits/)"
)


def _has_domains(folder: Path) -> bool:
    return any((folder / f"{d}.npz").is_file() or (folder / d).is_dir() for d in PACS_DOMAINS)


def resolve_pacs_root(path: str | Path | None = None) -> Path:
    """The folder holding the PACS domains (``<domain>.npz`` or ``<domain>/``): ``path`` (or its ``pacs/``,
    ``PACS/`` or ``kfold/`` subfolder), else the shared data folder's ``pacs/``; raises ``FileNotFoundError``."""
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"PACS folder {path} does not exist. {_WHERE}")
        for cand in (path, path / "pacs", path / "PACS", path / "kfold"):
            if cand.is_dir() and _has_domains(cand):
                return cand
        raise FileNotFoundError(
            f"no PACS domain ({', '.join(PACS_DOMAINS)}; as <domain>.npz or <domain>/<class>/<file>) in {path}. "
            + _WHERE
        )
    shared = shared_data_dir()
    if shared is not None and (shared / "pacs").is_dir() and _has_domains(shared / "pacs"):
        return shared / "pacs"
    looked = f"{shared / 'pacs'}" if shared is not None else "no shared data folder (../shared/data or $ADVBN_DATA)"
    raise FileNotFoundError(f"PACS not found (looked in: {looked}). {_WHERE}")


@lru_cache(maxsize=8)
def _read_npz(path: str, mtime: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    z = np.load(path)
    return z["data"], z["offsets"], z["y"].astype(np.int64), tuple(str(n) for n in z["names"])


def _scan_folder(folder: Path) -> list[str]:
    names = []
    for cls in PACS_CLASSES:
        if (folder / cls).is_dir():
            names += [f"{cls}/{p.name}" for p in sorted((folder / cls).iterdir()) if p.suffix.lower() in _IMAGE_EXTS]
    if not names:
        raise FileNotFoundError(f"no images in {folder}/<class>/ for the PACS classes {PACS_CLASSES}")
    return names


def _label_of(name: str, where: str) -> int:
    cls = name.split("/")[-2] if "/" in name else ""
    if cls not in PACS_CLASSES:
        raise ValueError(f"{where}: class folder {cls!r} in {name!r} is not a PACS class {PACS_CLASSES}")
    return PACS_CLASSES.index(cls)


def find_split_file(root: Path, domain: str, split: str) -> Path:
    """The official split list ``<domain>_<split>_kfold.txt`` in ``root/splits``, ``root/pacs_label``, ``root`` or
    next to ``root``; raises ``FileNotFoundError`` naming where it looked."""
    fname = f"{domain}_{split}_kfold.txt"
    cands = [(root / d / fname).resolve() for d in _SPLIT_DIRS]
    for c in cands:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"PACS split list {fname} not found (looked in {[str(c.parent) for c in cands]}): put the official "
        f"<domain>_<split>_kfold.txt lists in {root / 'splits'}, or use split='all'"
    )


def read_split_file(path: str | Path) -> list[tuple[str, int]]:
    """``(class/file, label 0..6)`` per line of an official list. The label comes from the class folder; a listed
    label of 0 (the art_painting crossval line-1 quirk) is accepted, any other disagreement raises."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        rel, listed = line.rsplit(maxsplit=1)
        name = "/".join(rel.strip().split("/")[-2:])
        label = _label_of(name, f"{path}:{i}")
        if int(listed) != 0 and int(listed) - 1 != label:
            raise ValueError(f"{path}:{i}: listed label {listed} disagrees with class folder {name.split('/')[0]!r}")
        out.append((name, label))
    return out


class PACSDomain(Dataset):
    """One PACS domain (``split`` of it): ``ds[i] -> (PIL image or transform(image), int label)``.

    ``transform`` / ``target_transform`` may be set after construction (timm's loaders do). ``names[i]`` is
    ``class/file``, ``targets`` the labels (0..6, ``PACS_CLASSES`` order); ``fmt`` is ``"npz"`` or ``"folder"``.
    """

    def __init__(self, domain: str, split: str = "all", root: str | Path | None = None,
                 transform: Callable[[Any], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        if domain not in PACS_DOMAINS:
            raise ValueError(f"unknown PACS domain {domain!r}; choose one of {PACS_DOMAINS}")
        if split not in PACS_SPLITS:
            raise ValueError(f"unknown PACS split {split!r}; choose one of {PACS_SPLITS}")
        self.root = resolve_pacs_root(root)
        self.domain, self.split = domain, split
        self.transform, self.target_transform = transform, target_transform
        self.classes = list(PACS_CLASSES)
        npz = self.root / f"{domain}.npz"
        if npz.is_file():
            self.fmt = "npz"
            self._data, self._offsets, y, all_names = _read_npz(str(npz), npz.stat().st_mtime)
            index = {n: i for i, n in enumerate(all_names)}
        elif (self.root / domain).is_dir():
            self.fmt = "folder"
            all_names = tuple(_scan_folder(self.root / domain))
            index = {n: i for i, n in enumerate(all_names)}
            y = np.array([_label_of(n, str(self.root / domain)) for n in all_names], dtype=np.int64)
        else:
            raise FileNotFoundError(f"PACS domain {domain!r} not in {self.root} (no {domain}.npz, no {domain}/)")
        if split == "all":
            self._idx = np.arange(len(all_names))
        else:
            entries = read_split_file(find_split_file(self.root, domain, split))
            missing = [n for n, _ in entries if n not in index]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} images of the {domain} {split} list are not in {self.root} (e.g. {missing[0]})"
                )
            self._idx = np.array([index[n] for n, _ in entries], dtype=np.int64)
            y = np.asarray(y)
            for n, label in entries:
                if y[index[n]] != label:
                    raise ValueError(f"{domain}/{n}: stored label {y[index[n]]} != class folder label {label}")
        self.names = [all_names[i] for i in self._idx]
        self.targets = [int(y[i]) for i in self._idx]

    def __len__(self) -> int:
        return len(self._idx)

    def load_image(self, i: int):
        """Image ``i`` as an RGB PIL image (128 px from the npz files, the original size from a folder)."""
        from PIL import Image

        if self.fmt == "npz":
            j = int(self._idx[i])
            raw = self._data[self._offsets[j] : self._offsets[j + 1]].tobytes()
            with Image.open(io.BytesIO(raw)) as im:
                return im.convert("RGB")
        with Image.open(self.root / self.domain / self.names[i]) as im:
            return im.convert("RGB")

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        img, label = self.load_image(i), self.targets[i]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return img, label

    def __repr__(self) -> str:
        return f"PACSDomain({self.domain!r}, split={self.split!r}, n={len(self)}, fmt={self.fmt!r}, root={self.root})"


class PACSConcat(ConcatDataset):
    """A ``ConcatDataset`` of PACS datasets with ``targets`` and a ``transform`` that sets every part's."""

    datasets: list[PACSDomain]

    @property
    def targets(self) -> list[int]:
        return [t for d in self.datasets for t in d.targets]

    @property
    def transform(self) -> Callable[[Any], Any] | None:
        return self.datasets[0].transform

    @transform.setter
    def transform(self, value: Callable[[Any], Any] | None) -> None:
        for d in self.datasets:
            d.transform = value


def load_pacs(domain: str, split: str = "all", root: str | Path | None = None,
              transform: Callable[[Any], Any] | None = None) -> PACSDomain:
    """One PACS domain: ``split`` is ``"all"`` (every image), or an official ``"train"``/``"crossval"``/``"test"``
    list (``"test"`` is every image again, in list order)."""
    return PACSDomain(domain, split, root, transform)


def pacs_single_source(source: str = "photo", root: str | Path | None = None, *, train_split: str = "all"
                       ) -> tuple[PACSDomain, dict[str, PACSDomain]]:
    """Single-source protocol: train on ``source`` (``train_split`` of it; all images by default), test on every
    image of each other domain. Returns ``(train, {target_domain: dataset})``."""
    root = resolve_pacs_root(root)
    train = PACSDomain(source, train_split, root)
    return train, {d: PACSDomain(d, "all", root) for d in PACS_DOMAINS if d != source}


def pacs_leave_one_out(target: str, root: str | Path | None = None
                       ) -> tuple[PACSConcat, PACSConcat, PACSDomain]:
    """Leave-one-domain-out: ``(train, val, test)`` = the train lists of the other three domains, their crossval
    lists (for model selection), and every image of ``target``."""
    if target not in PACS_DOMAINS:
        raise ValueError(f"unknown PACS domain {target!r}; choose one of {PACS_DOMAINS}")
    root = resolve_pacs_root(root)
    sources = [d for d in PACS_DOMAINS if d != target]
    train = PACSConcat([PACSDomain(d, "train", root) for d in sources])
    val = PACSConcat([PACSDomain(d, "crossval", root) for d in sources])
    return train, val, PACSDomain(target, "all", root)
