"""The 15 ImageNet-C / CIFAR-10-C corruptions and the 4 extra ones, at 5 severities, on numpy/scipy/OpenCV.

:func:`corrupt` applies one corruption to a uint8 image ``(H, W, 3)`` or batch ``(N, H, W, 3)`` and returns the same
shape and dtype. Randomness is drawn from one generator per image, seeded by ``(seed, start_index + i)``: the result
for an image does not depend on the batch it is processed in, and severities of one corruption share their random
draws. ``dataset`` picks the published parameter table (``"cifar10"``: ``make_cifar_c.py``, ``"imagenet"``:
``make_imagenet_c.py``). Float results are clipped to [0, 255] and truncated to uint8 as in the published scripts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from advbn_aug._extras import require
from advbn_aug.eval.corruptions.params import (
    CIFAR10_PARAMS,
    ELASTIC_REFERENCE,
    IMAGENET_PARAMS,
    PARAM_TABLES,
    REFERENCE_SIZE,
)

require("advbn_aug.eval", "eval", "cv2", "scipy")  # the blur, digital and weather corruptions are built on them

from advbn_aug.eval.corruptions import blur, digital, noise, weather  # noqa: E402

__all__ = [
    "Corruption", "CORRUPTIONS", "BENCHMARK_CORRUPTIONS", "EXTRA_CORRUPTIONS", "ALL_CORRUPTIONS", "SEVERITIES",
    "DATASETS", "CIFAR10_PARAMS", "IMAGENET_PARAMS", "PARAM_TABLES", "corrupt", "corruption_params",
    "resolve_corruptions", "check_severity", "check_dataset",
]

CorruptionFn = Callable[[np.ndarray, Any, Sequence[np.random.Generator]], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: ``fn(x uint8 (N, H, W, 3), param, rngs) -> (N, H, W, 3)`` on the 0..255 scale."""

    name: str
    family: str
    fn: CorruptionFn
    benchmark: bool


def _entry(family: str, fn: CorruptionFn, benchmark: bool = True) -> tuple[str, Corruption]:
    return fn.__name__, Corruption(fn.__name__, family, fn, benchmark)


# Published order: the 15 benchmark corruptions, then the 4 extra (validation) ones.
CORRUPTIONS: dict[str, Corruption] = dict([
    _entry("noise", noise.gaussian_noise),
    _entry("noise", noise.shot_noise),
    _entry("noise", noise.impulse_noise),
    _entry("blur", blur.defocus_blur),
    _entry("blur", blur.glass_blur),
    _entry("blur", blur.motion_blur),
    _entry("blur", blur.zoom_blur),
    _entry("weather", weather.snow),
    _entry("weather", weather.frost),
    _entry("weather", weather.fog),
    _entry("weather", weather.brightness),
    _entry("digital", digital.contrast),
    _entry("digital", digital.elastic_transform),
    _entry("digital", digital.pixelate),
    _entry("digital", digital.jpeg_compression),
    _entry("noise", noise.speckle_noise, benchmark=False),
    _entry("blur", blur.gaussian_blur, benchmark=False),
    _entry("weather", weather.spatter, benchmark=False),
    _entry("digital", digital.saturate, benchmark=False),
])
BENCHMARK_CORRUPTIONS: tuple[str, ...] = tuple(n for n, c in CORRUPTIONS.items() if c.benchmark)
EXTRA_CORRUPTIONS: tuple[str, ...] = tuple(n for n, c in CORRUPTIONS.items() if not c.benchmark)
ALL_CORRUPTIONS: tuple[str, ...] = tuple(CORRUPTIONS)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
DATASETS: tuple[str, ...] = tuple(PARAM_TABLES)
_GROUPS = {"all": ALL_CORRUPTIONS, "benchmark": BENCHMARK_CORRUPTIONS, "extra": EXTRA_CORRUPTIONS}


def resolve_corruptions(names: str | Iterable[str]) -> tuple[str, ...]:
    """Expand and check corruption names. Accepts names, ``"all"``, ``"benchmark"`` (the 15) or ``"extra"`` (the 4),
    as a list or one comma-separated string; keeps order and drops repeats."""
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for raw in items:
        name = str(raw).strip()
        if not name:
            continue
        group = _GROUPS.get(name.lower())
        if group is None and name not in CORRUPTIONS:
            raise ValueError(
                f"unknown corruption {name!r}: choose from {', '.join(ALL_CORRUPTIONS)} "
                "(or the groups 'all', 'benchmark', 'extra')"
            )
        for n in group or (name,):
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("no corruption given: pass at least one name, or 'benchmark' for the 15 ImageNet-C ones")
    return tuple(out)


def check_severity(severity: int) -> int:
    """Return ``severity`` as int if it is one of 1..5, else raise a ``ValueError`` that says so."""
    if isinstance(severity, bool) or int(severity) != severity or int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    return int(severity)


def check_dataset(dataset: str) -> str:
    """Return ``dataset`` if it names a parameter table (``"cifar10"`` or ``"imagenet"``), else raise."""
    if dataset not in PARAM_TABLES:
        raise ValueError(f"unknown parameter table {dataset!r}: choose 'cifar10' (32 px) or 'imagenet' (224 px)")
    return dataset


def corruption_params(name: str, severity: int, dataset: str = "cifar10",
                      image_size: tuple[int, int] | None = None) -> Any:
    """The published parameters of ``name`` at ``severity`` from the ``dataset`` table.

    Elastic transform parameters come back in pixels for ``image_size`` ``(H, W)`` (default: the table's size).
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}: choose from {', '.join(ALL_CORRUPTIONS)}")
    table = PARAM_TABLES[check_dataset(dataset)]
    c = table[name][check_severity(severity) - 1]
    if name == "elastic_transform":
        side = min(image_size) if image_size is not None else REFERENCE_SIZE[dataset]
        unit = ELASTIC_REFERENCE[dataset] * side / REFERENCE_SIZE[dataset]
        c = tuple(float(v) * unit for v in c)
    return c


def _check_images(images: np.ndarray) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array, got {type(images).__name__}: pass np.asarray(images)")
    if images.dtype != np.uint8:
        raise TypeError(
            f"images must be uint8 (0..255), got {images.dtype}: convert with "
            "np.clip(x * 255, 0, 255).astype(np.uint8) for [0, 1] floats"
        )
    if images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ValueError(
            f"images must be (H, W, 3) or (N, H, W, 3) RGB, got shape {images.shape}: "
            "move channels last (x.transpose(0, 2, 3, 1)) or stack grey images to 3 channels"
        )
    return images


def corrupt(images: np.ndarray, name: str, severity: int, *, seed: int = 0, dataset: str = "cifar10",
            start_index: int = 0) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` (1..5) to uint8 ``(H, W, 3)`` or ``(N, H, W, 3)`` images.

    Returns a new uint8 array of the same shape. Image ``i`` uses the generator seeded with
    ``(seed, start_index + i)``, so corrupting a set in chunks with matching ``start_index`` equals one call.
    """
    images = _check_images(images)
    (name,) = resolve_corruptions([name])
    single = images.ndim == 3
    batch = images[None] if single else images
    c = corruption_params(name, severity, dataset, batch.shape[1:3])
    if len(batch) == 0:
        return images.copy()
    rngs = [np.random.default_rng([int(seed), int(start_index) + i]) for i in range(len(batch))]
    out = CORRUPTIONS[name].fn(np.ascontiguousarray(batch), c, rngs)
    if out.dtype != np.uint8:
        out = np.clip(out, 0, 255).astype(np.uint8)
    return out[0] if single else out
