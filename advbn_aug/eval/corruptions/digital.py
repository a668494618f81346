"""Digital corruptions: contrast, elastic transform, pixelate, JPEG compression and saturate.

Corruption functions map a uint8 batch ``(N, H, W, 3)``, one severity parameter and one random generator per image
to a batch ``(N, H, W, 3)`` on the 0..255 scale (float32, or uint8 where the codec already quantises).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from advbn_aug.eval.corruptions.blur import gaussian_smooth

__all__ = ["contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"]


def contrast(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Shrink every channel towards its per-image mean by the factor ``c``."""
    xf = x.astype(np.float32) / 255.0
    mean = xf.mean(axis=(1, 2), keepdims=True)
    return np.clip((xf - mean) * c + mean, 0, 1) * 255


def elastic_transform(x: np.ndarray, c: tuple[float, float, float],
                      rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Random affine warp (corner jitter ``c[2]`` px) then a smooth displacement field (strength ``c[0]`` px,
    smoothness ``c[1]`` px); reflected borders. ``c`` is in pixels of this image (already scaled)."""
    alpha, sigma, jitter = c
    h, w = x.shape[1:3]
    centre = np.float32((h, w)) // 2
    half = min(h, w) // 3
    src = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    cols, rows = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    xf = x.astype(np.float32) / 255.0
    out = np.empty_like(xf)
    for i, (xi, r) in enumerate(zip(xf, rngs)):
        dst = src + r.uniform(-jitter, jitter, size=src.shape).astype(np.float32)
        warped = cv2.warpAffine(xi, cv2.getAffineTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT_101)
        dx, dy = (gaussian_smooth(r.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3, batched=False)
                  * alpha for _ in range(2))
        # (row, col) + (dy, dx), bilinear, half-sample symmetric borders (scipy 'reflect')
        out[i] = cv2.remap(warped, cols + dx.astype(np.float32), rows + dy.astype(np.float32), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    return np.clip(out, 0, 1) * 255


def pixelate(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Box-downsample to ``c`` times the size and box-upsample back (Pillow ``BOX``). Returns uint8."""
    h, w = x.shape[1:3]
    small = (max(1, int(w * c)), max(1, int(h * c)))
    out = np.empty_like(x)
    for i, xi in enumerate(x):
        im = Image.fromarray(xi).resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX)
        out[i] = np.asarray(im)
    return out


def jpeg_compression(x: np.ndarray, c: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Encode and decode with Pillow's JPEG codec at quality ``c``. Returns uint8."""
    out = np.empty_like(x)
    for i, xi in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(xi).save(buf, format="JPEG", quality=int(c))
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def saturate(x: np.ndarray, c: tuple[float, float], rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Map the HSV saturation ``S -> clip(S * c[0] + c[1], 0, 1)`` with hue and value fixed.

    Computed in RGB: each channel is ``V - S' (V - x) / S``. Grey pixels (S = 0) have hue 0 (red) in the HSV
    round trip, so a positive offset ``c[1]`` tints them red: ``(V, V (1 - S'), V (1 - S'))``.
    """
    xf = x.astype(np.float32) / 255.0
    v = xf.max(axis=-1, keepdims=True)
    lo = xf.min(axis=-1, keepdims=True)
    s = np.where(v > 0, (v - lo) / np.maximum(v, 1e-12), 0.0)
    s_new = np.clip(s * c[0] + c[1], 0, 1)
    coloured = v - s_new * (v - xf) / np.maximum(s, 1e-12)
    grey = np.concatenate([v, v * (1 - s_new), v * (1 - s_new)], axis=-1)
    out = np.where(s > 0, coloured, grey)
    return np.clip(out, 0, 1) * 255
