"""The identity of a generated test set: sha256 of its uint8 pixels, and a check against pinned hashes.

Generated sets (Stylized-CIFAR-10) are cached under a key hashing their *inputs*; the same inputs can render to
different pixels on another machine (another onnxruntime build or CPU), so accuracies on two copies are comparable
only when the pixel hashes agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np

__all__ = ["array_sha256", "parts_sha256", "pin_mismatches", "mismatch_text"]


def array_sha256(images: np.ndarray) -> str:
    """Hex sha256 of the raw bytes of ``images`` (uint8 ``(N, H, W, 3)``, C order): ``hashlib.sha256(x.tobytes())``
    of the array as cached (``np.load(path)["x"]``)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}: hash the set as generated")
    return hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()


def parts_sha256(parts: Mapping[str, str]) -> str:
    """One hex sha256 for a set made of parts (e.g. ``{"0.5": sha, "0.75": sha, "1": sha}``, one per style
    strength): sha256 of ``json.dumps(parts, sort_keys=True)``."""
    return hashlib.sha256(json.dumps(dict(parts), sort_keys=True).encode()).hexdigest()


def pin_mismatches(found: Mapping[str, str], pinned: Mapping[str, str] | None) -> dict[str, tuple[str, str]]:
    """``{part: (found sha256, pinned sha256)}`` of the parts whose hash differs from the pinned one (parts without
    a pin are not checked)."""
    pinned = pinned or {}
    return {k: (v, pinned[k]) for k, v in found.items() if k in pinned and pinned[k] != v}


def mismatch_text(what: str, mismatches: Mapping[str, tuple[str, str]], part: str = "part") -> str:
    """A warning naming both hashes of every differing part of set ``what`` (``mismatches`` as
    :func:`pin_mismatches` returns them)."""
    parts = "; ".join(f"{part} {k}: generated {got}, pinned {want}" for k, (got, want) in mismatches.items())
    return (f"{what} differs from the pinned set ({parts}): its images were rendered differently (another machine "
            "or onnxruntime build), so accuracies on it are not comparable with those on the pinned set")
