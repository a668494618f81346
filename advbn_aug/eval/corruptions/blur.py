"""Blur corruptions: defocus, glass, motion, zoom and gaussian blur, plus the blur building blocks that the
weather corruptions reuse (:func:`gaussian_smooth`, :func:`clipped_zoom`, :func:`motion_blur_kernel`).

Corruption functions map a uint8 batch ``(N, H, W, 3)``, one severity parameter and one random generator per image
to a float32 batch ``(N, H, W, 3)`` on the 0..255 scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage

__all__ = [
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur",
    "gaussian_smooth", "clipped_zoom", "motion_blur_kernel", "apply_motion_blur",
]


def gaussian_smooth(x: np.ndarray, sigma: float, *, mode: str = "nearest", truncate: float = 4.0,
                    batched: bool = True) -> np.ndarray:
    """Gaussian filter over the spatial axes only (``skimage.filters.gaussian`` semantics: ``mode`` border,
    kernel radius ``int(truncate * sigma + 0.5)``).

    ``x``: ``(N, H, W, C)`` when ``batched`` else ``(H, W)`` or ``(H, W, C)``; returns float32 of the same shape.
    """
    x = np.asarray(x, dtype=np.float32)
    if batched:
        sig = (0.0, sigma, sigma) + (0.0,) * (x.ndim - 3)
    else:
        sig = (sigma, sigma) + (0.0,) * (x.ndim - 2)
    return ndimage.gaussian_filter(x, sig, mode=mode, truncate=truncate)


def clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    """Zoom into the centre by ``zoom`` >= 1 and keep the input size. ``(H, W[, C]) -> same shape``, float32.

    Matches ``scipy.ndimage.zoom(order=1)`` of the central ``ceil(H / zoom)`` crop followed by a centre trim (the
    published ``clipped_zoom``), computed as one bilinear affine warp.
    """
    h, w = img.shape[:2]
    rows = []
    for size in (w, h):
        crop = int(math.ceil(size / zoom))
        start = (size - crop) // 2
        out = int(round(crop * zoom))
        trim = (out - size) // 2
        scale = (crop - 1) / (out - 1) if out > 1 else 0.0
        rows.append((scale, start + trim * scale))
    (sx, ox), (sy, oy) = rows
    m = np.array([[sx, 0.0, ox], [0.0, sy, oy]], dtype=np.float64)
    return cv2.warpAffine(np.asarray(img, dtype=np.float32), m, (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def motion_blur_kernel(radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick ``MotionBlurImage`` as a correlation kernel ``(2K+1, 2K+1)``, ``K = 2 ceil(radius) + 1``.

    A one-sided line of ``K`` taps with half-Gaussian weights ``exp(-i^2 / 2 sigma^2)`` (normalised), tap ``i`` at
    offset ``round(i * (cos a, sin a))`` from the centre, ``a = angle`` in degrees (0 = along +x).
    """
    width = int(2 * math.ceil(radius) + 1) if radius > 0 else 3
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-(i**2) / (2.0 * sigma**2))
    weights /= weights.sum()
    a = math.radians(angle)
    ox = np.ceil(i * math.cos(a) - 0.5).astype(int)
    oy = np.ceil(i * math.sin(a) - 0.5).astype(int)
    kernel = np.zeros((2 * width + 1, 2 * width + 1), dtype=np.float32)
    np.add.at(kernel, (width + oy, width + ox), weights.astype(np.float32))
    return kernel


def apply_motion_blur(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """Motion-blur one image ``(H, W[, C])`` (edge pixels repeat outside the image). Returns float32."""
    kernel = motion_blur_kernel(radius, sigma, angle)
    return cv2.filter2D(np.asarray(img, dtype=np.float32), -1, kernel, borderType=cv2.BORDER_REPLICATE)


def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, (ksize, ksize), alias_blur)


def defocus_blur(x: np.ndarray, c: tuple[float, float], rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Convolution with an anti-aliased disk of radius ``c[0]`` (alias blur ``c[1]``)."""
    kernel = _disk_kernel(*c)
    xf = x.astype(np.float32)
    return np.stack([cv2.filter2D(xi, -1, kernel, borderType=cv2.BORDER_REFLECT_101) for xi in xf])


def _shuffle_pixels(x: np.ndarray, delta: int, iterations: int, rngs: Sequence[np.random.Generator]) -> None:
    """In place: the published local pixel shuffle. Positions are visited bottom-right to top-left and each takes
    the pixel at a random offset in ``[-delta, delta)``.

    The published code writes ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on numpy pixel views, which copies
    ``x[h', w']`` into ``x[h, w]`` and leaves ``x[h', w']`` unchanged (not a swap); CIFAR-10-C and ImageNet-C were made
    that way, so this does the same. Copies stay sequential within an image.
    """
    n, h, w = x.shape[:3]
    rows = np.arange(h - delta, delta, -1)
    cols = np.arange(w - delta, delta, -1)
    if not len(rows) or not len(cols):
        return
    offsets = np.stack([r.integers(-delta, delta, size=(iterations, len(rows), len(cols), 2)) for r in rngs])
    pos = (rows[:, None] * w + cols[None, :]).ravel()  # visiting order within one iteration
    partner = np.tile(pos, iterations)[None] + (offsets[..., 1] * w + offsets[..., 0]).reshape(n, -1)
    pos = np.tile(pos, iterations)
    flat = x.reshape(n, h * w, -1)
    pos_list = pos.tolist()
    for i in range(n):  # update an index list in pure Python (faster than numpy per step), gather once
        perm = list(range(h * w))
        for p, q in zip(pos_list, partner[i].tolist()):
            perm[p] = perm[q]
        flat[i] = flat[i][perm]


def glass_blur(x: np.ndarray, c: tuple[float, int, int], rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Gaussian blur (sigma ``c[0]``), ``c[2]`` rounds of local pixel shuffling within ``c[1]`` pixels, blur again."""
    sigma, delta, iterations = c
    blurred = np.clip(gaussian_smooth(x.astype(np.float32) / 255.0, sigma), 0, 1)
    xu = (blurred * 255).astype(np.uint8)
    _shuffle_pixels(xu, int(delta), int(iterations), rngs)
    return np.clip(gaussian_smooth(xu.astype(np.float32) / 255.0, sigma), 0, 1) * 255


def motion_blur(x: np.ndarray, c: tuple[float, float], rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Line blur of radius ``c[0]``, sigma ``c[1]`` at a random angle in [-45, 45) degrees per image."""
    xf = x.astype(np.float32)
    out = [apply_motion_blur(xi, c[0], c[1], r.uniform(-45, 45)) for xi, r in zip(xf, rngs)]
    return np.rint(np.stack(out))


def zoom_blur(x: np.ndarray, c: tuple[float, float, float], rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Mean of the image and its centre zooms by ``np.arange(*c)``."""
    zooms = np.arange(*c)
    xf = x.astype(np.float32) / 255.0
    out = np.empty_like(xf)
    for i, xi in enumerate(xf):
        acc = xi.copy()
        for z in zooms:
            acc += clipped_zoom(xi, float(z))
        out[i] = acc / (len(zooms) + 1)
    return np.clip(out, 0, 1) * 255


def gaussian_blur(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Gaussian blur with standard deviation ``c`` pixels."""
    return np.clip(gaussian_smooth(x.astype(np.float32) / 255.0, c), 0, 1) * 255
