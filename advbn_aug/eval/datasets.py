"""Where corrupted evaluation images come from: the published benchmark files, or generated from clean images and
cached on disk.

- CIFAR-10-C: ``<root>/<corruption>.npy`` uint8 ``(5 * n, 32, 32, 3)`` (severity 1 first, ``n`` = 10,000 in the
  release) and ``<root>/labels.npy`` ``(5 * n,)`` or ``(n,)``.
- ImageNet-C: ``<root>/<corruption>/<severity>/<class>/*.JPEG``; classes are numbered in sorted order.
- Generated sets: :func:`corrupted_set` writes ``<cache>/<corruption>-s<severity>-<key>.npy`` where ``key`` hashes
  the corruption, severity, seed, parameter table entry and a fingerprint of the clean images.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from advbn_aug.eval.corruptions import check_severity, corrupt, corruption_params, resolve_corruptions

__all__ = [
    "load_cifar10c", "ImageNetCFolder", "images_fingerprint", "corrupted_set", "corrupted_set_key",
    "default_cache_dir",
]

_IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp")
_CACHE_VERSION = 1  # bump when a corruption's implementation changes its output


def _one_name(corruption: str) -> str:
    names = resolve_corruptions([corruption])
    if len(names) != 1:
        raise ValueError(f"expected one corruption name, got the group {corruption!r}: pass a single name")
    return names[0]


def load_cifar10c(root: str | Path, corruption: str, severity: int, num_images: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One severity of a CIFAR-10-C corruption: ``(x uint8 (n, H, W, 3), y int64 (n,))``.

    Reads ``<root>/<corruption>.npy`` memory-mapped, so only the requested rows are loaded; ``num_images`` keeps the
    first rows of the severity block.
    """
    root = Path(root)
    name = _one_name(corruption)
    severity = check_severity(severity)
    path = root / f"{name}.npy"
    labels_path = root / "labels.npy"
    for p in (path, labels_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"CIFAR-10-C file {p} not found: pass --data-dir/root as the folder holding <corruption>.npy and "
                "labels.npy (the extracted CIFAR-10-C.tar)"
            )
    x = np.load(path, mmap_mode="r")
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] % 5 or x.dtype != np.uint8:
        raise ValueError(
            f"{path} has shape {x.shape} and dtype {x.dtype}; expected uint8 (5 * n, H, W, 3), e.g. "
            "(50000, 32, 32, 3) = 5 severities x 10000 images: use the unmodified CIFAR-10-C release file"
        )
    n = x.shape[0] // 5
    y = np.load(labels_path, mmap_mode="r")
    if y.ndim != 1 or len(y) not in (n, 5 * n):
        raise ValueError(
            f"{labels_path} has shape {y.shape}; expected ({5 * n},) or ({n},) labels to match {path.name}"
        )
    if num_images is not None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        n_keep = min(int(num_images), n)
    else:
        n_keep = n
    start = (severity - 1) * n
    y_block = y[start:start + n_keep] if len(y) == 5 * n else y[:n_keep]
    return np.array(x[start:start + n_keep]), np.array(y_block, dtype=np.int64)


class ImageNetCFolder(torch.utils.data.Dataset):
    """ImageNet-C images of one corruption and severity: items are ``(uint8 (H, W, 3) array, int label)``.

    ``class_to_idx`` maps class folder names (e.g. WordNet ids) to labels; default: sorted folder order (the
    torchvision ``ImageFolder`` convention, which matches the standard ImageNet label order for wnid folders).
    """

    def __init__(self, root: str | Path, corruption: str, severity: int,
                 class_to_idx: dict[str, int] | None = None, num_images: int | None = None):
        self.root = Path(root) / _one_name(corruption) / str(check_severity(severity))
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"ImageNet-C folder {self.root} not found: pass the folder that holds "
                "<corruption>/<severity>/<class>/*.JPEG"
            )
        classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        if not classes:
            raise FileNotFoundError(f"no class folders in {self.root}: expected <class>/*.JPEG under it")
        self.class_to_idx = dict(class_to_idx) if class_to_idx is not None else {c: i for i, c in enumerate(classes)}
        missing = [c for c in classes if c not in self.class_to_idx]
        if missing:
            raise ValueError(f"class folders {missing[:5]} are missing from class_to_idx: add them or drop the folders")
        self.samples: list[tuple[Path, int]] = [
            (f, self.class_to_idx[c])
            for c in classes
            for f in sorted((self.root / c).iterdir())
            if f.suffix.lower() in _IMAGE_EXTENSIONS
        ]
        if not self.samples:
            raise FileNotFoundError(f"no images ({', '.join(_IMAGE_EXTENSIONS)}) under {self.root}")
        if num_images is not None:
            self.samples = self.samples[: int(num_images)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as im:
            return np.array(im.convert("RGB")), label


def images_fingerprint(images: np.ndarray) -> str:
    """SHA-1 of an image array's shape, dtype and bytes (identifies the clean source of a generated set)."""
    h = hashlib.sha1(f"{images.shape}{images.dtype}".encode())
    h.update(np.ascontiguousarray(images).data)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$ADVBN_CACHE/corruptions`` (default ``~/.cache/advbn_aug/corruptions``)."""
    return Path(os.environ.get("ADVBN_CACHE", Path.home() / ".cache" / "advbn_aug")) / "corruptions"


def corrupted_set_key(fingerprint: str, corruption: str, severity: int, seed: int, dataset: str,
                      image_size: tuple[int, int]) -> str:
    """Hex key of a generated set: hashes every input that changes its pixels."""
    spec = {
        "version": _CACHE_VERSION,
        "corruption": corruption,
        "severity": int(severity),
        "seed": int(seed),
        "dataset": dataset,
        "params": repr(corruption_params(corruption, severity, dataset, image_size)),
        "images": fingerprint,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def corrupted_set(images: np.ndarray, corruption: str, severity: int, *, seed: int = 0, dataset: str = "cifar10",
                  cache_dir: str | Path | None = None, use_cache: bool = True, fingerprint: str | None = None,
                  chunk_size: int = 1000) -> tuple[np.ndarray, bool]:
    """``(corrupted uint8 (N, H, W, 3), cache_hit)`` for clean ``images (N, H, W, 3)``.

    Loads ``<cache_dir>/<corruption>-s<severity>-<key>.npy`` when present, else generates in chunks of
    ``chunk_size`` (same result as one :func:`corrupt` call) and writes it (``cache_dir`` default:
    :func:`default_cache_dir`; ``use_cache=False`` neither reads nor writes). ``fingerprint`` may pass a precomputed
    :func:`images_fingerprint`.
    """
    name = _one_name(corruption)
    severity = check_severity(severity)
    path = None
    if use_cache:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        key = corrupted_set_key(fingerprint or images_fingerprint(images), name, severity, seed, dataset,
                                images.shape[1:3])
        path = folder / f"{name}-s{severity}-{key}.npy"
        if path.is_file():
            cached = np.load(path)
            if cached.shape == images.shape and cached.dtype == np.uint8:
                return cached, True
    out = np.empty_like(images)
    for start in range(0, len(images), chunk_size):
        out[start:start + chunk_size] = corrupt(images[start:start + chunk_size], name, severity, seed=seed,
                                                dataset=dataset, start_index=start)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, out)
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs regeneration next time
    return out, False
