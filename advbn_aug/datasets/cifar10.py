"""CIFAR-10 loading: a path the user gives, then the shared data folder, then torchvision's download.

The shared folder (``../shared/data`` next to the checkout, or ``$ADVBN_DATA``) holds CIFAR-10 as JPEG byte streams
(``train_jpeg.npz``, ``test_jpeg.npz``) and 1,000 lossless test images (``test_lossless1000.npz``). Arrays are
returned as ``uint8`` images ``(N, 32, 32, 3)`` and ``int64`` labels ``(N,)``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

__all__ = ["shared_data_dir", "load_cifar10", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_SPLITS = ("train", "test", "test_lossless")


def shared_data_dir() -> Path | None:
    """The shared data folder: ``$ADVBN_DATA`` if set, else the first ``shared/data`` found above the cwd or
    this package; ``None`` if there is none."""
    env = os.environ.get("ADVBN_DATA")
    if env:
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for parent in (start, *start.parents):
            cand = parent.parent / "shared" / "data"
            if (cand / "cifar10").is_dir() or (cand / "weights").is_dir():
                return cand
    return None


def _decode_jpeg_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    z = np.load(path)
    data, offsets, y = z["data"], z["offsets"], z["y"]
    x = np.empty((len(y), 32, 32, 3), dtype=np.uint8)
    for i in range(len(y)):
        with Image.open(io.BytesIO(data[offsets[i] : offsets[i + 1]].tobytes())) as im:
            x[i] = np.asarray(im.convert("RGB"))
    return x, y.astype(np.int64)


def _cache_file(path: Path) -> Path:
    cache = Path(os.environ.get("ADVBN_CACHE", Path.home() / ".cache" / "advbn_aug"))
    st = path.stat()
    return cache / f"{path.stem}-{st.st_size}-{int(st.st_mtime)}.npz"


def _load_from_dir(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "test_lossless":
        z = np.load(root / "test_lossless1000.npz")
        return z["x"], z["y"].astype(np.int64)
    path = root / f"{split}_jpeg.npz"
    cached = _cache_file(path)
    if cached.is_file():
        z = np.load(cached)
        return z["x"], z["y"]
    x, y = _decode_jpeg_npz(path)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y)
        tmp.replace(cached)
    except OSError:
        pass  # a read-only home only costs a re-decode next time
    return x, y


def _load_torchvision(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(str(root), train=split == "train", download=True)
    return np.asarray(ds.data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64)


def load_cifar10(split: str = "train", root: str | Path | None = None, *, download: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10 as ``(x uint8 (N, 32, 32, 3), y int64 (N,))``.

    Args:
        split: ``"train"`` (50k), ``"test"`` (10k) or ``"test_lossless"`` (the first 1,000 official test images,
            lossless; needs the shared files).
        root: a folder holding either the shared ``*_jpeg.npz`` files (or a ``cifar10/`` subfolder with them) or
            torchvision's ``cifar-10-batches-py``. Without it: the shared data folder, then torchvision's download
            into ``~/.cache/advbn_aug/torchvision`` when ``download`` is true.
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown CIFAR-10 split {split!r}; choose one of {_SPLITS}")
    candidates: list[Path] = []
    if root is not None:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"CIFAR-10 folder {root} does not exist: pass an existing folder as root")
        candidates = [root, root / "cifar10"]
    else:
        shared = shared_data_dir()
        if shared is not None:
            candidates = [shared / "cifar10"]
    want = "test_lossless1000.npz" if split == "test_lossless" else f"{split}_jpeg.npz"
    for cand in candidates:
        if (cand / want).is_file():
            return _load_from_dir(cand, split)
    if split != "test_lossless":
        if root is not None and (root / "cifar-10-batches-py").is_dir():
            return _load_torchvision(root, split)
        if root is None and download:
            try:
                return _load_torchvision(Path.home() / ".cache" / "advbn_aug" / "torchvision", split)
            except Exception as err:  # no internet
                raise FileNotFoundError(
                    "CIFAR-10 not found: no shared data folder (../shared/data or $ADVBN_DATA) and the torchvision "
                    f"download failed ({err}). Pass root=<folder with {want} or cifar-10-batches-py>."
                ) from err
    raise FileNotFoundError(
        f"CIFAR-10 split {split!r} not found (looked for {want} in {[str(c) for c in candidates] or 'nothing'}): "
        "pass root=<folder holding it> or set $ADVBN_DATA to the shared data folder"
    )
