"""Weather corruptions: snow, frost, fog, brightness and spatter.

Corruption functions map a uint8 batch ``(N, H, W, 3)``, one severity parameter and one random generator per image
to a float32 batch ``(N, H, W, 3)`` on the 0..255 scale.

Frost: the published corruption blends crops of six photographs of frosted glass. Those photographs are not
shipped here; :func:`frost_textures` instead draws a fixed bank of procedural frost textures (a fractal haze plus
anti-aliased ice needles with side branches, tinted pale blue), generated from fixed seeds so every run sees the
same bank. Expect the frost numbers to differ somewhat from the published CIFAR-10-C / ImageNet-C files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from advbn_aug.eval.corruptions.blur import apply_motion_blur, clipped_zoom, gaussian_smooth

__all__ = ["snow", "frost", "fog", "brightness", "spatter", "plasma_fractal", "frost_textures"]

_FROST_BANK_SIZE = 5


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map ``(size, size)`` in [0, 1] (``size`` a power of two, wrap-around borders).

    The displacement at each level is ``w * U(-w, w)`` with ``w`` starting at 100 and divided by ``decay`` per
    level, the amplitude schedule of the published fog corruption.
    """
    if size < 2 or size & (size - 1):
        raise ValueError(f"plasma_fractal size must be a power of two >= 2, got {size}")
    grid = np.zeros((size, size), dtype=np.float64)
    step, wibble = size, 100.0

    def displaced(mean: np.ndarray) -> np.ndarray:
        return mean / 4 + wibble * rng.uniform(-wibble, wibble, mean.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0::step, 0::step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        grid[half::step, half::step] = displaced(square)
        centres = grid[half::step, half::step]
        corners = grid[0::step, 0::step]
        # points on the corner rows, between two corners: left/right corners, centres above/below
        grid[0::step, half::step] = displaced(corners + np.roll(corners, -1, axis=1) + centres
                                              + np.roll(centres, 1, axis=0))
        # points on the centre rows, below a corner: corners above/below, centres left/right
        grid[half::step, 0::step] = displaced(corners + np.roll(corners, -1, axis=0) + centres
                                              + np.roll(centres, 1, axis=1))
        step = half
        wibble /= decay
    grid -= grid.min()
    peak = grid.max()
    return (grid / peak if peak > 0 else grid).astype(np.float32)


def _next_pow2(n: int) -> int:
    return 1 << max(1, int(math.ceil(math.log2(max(n, 2)))))


def fog(x: np.ndarray, c: tuple[float, float], rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Add ``c[0]`` times a plasma fractal (decay ``c[1]``) and rescale by ``max / (max + c[0])``."""
    h, w = x.shape[1:3]
    size = _next_pow2(max(h, w))
    xf = x.astype(np.float32) / 255.0
    out = np.empty_like(xf)
    for i, (xi, r) in enumerate(zip(xf, rngs)):
        peak = xi.max()
        haze = plasma_fractal(size, c[1], r)[:h, :w, None]
        out[i] = (xi + c[0] * haze) * peak / (peak + c[0])
    return np.clip(out, 0, 1) * 255


def _draw_frost_texture(side: int, rng: np.random.Generator) -> np.ndarray:
    haze = plasma_fractal(_next_pow2(side), 1.6, rng)[:side, :side]
    needles = np.zeros((side, side), dtype=np.float32)
    scale = 8  # draw at 8x sub-pixel precision (cv2 shift=3)
    n_seeds = max(4, side * side // 150)
    for _ in range(n_seeds):
        y0, x0 = rng.uniform(0, side, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        length = side * rng.uniform(0.02, 0.12) + 2
        value = float(rng.uniform(0.35, 1.0))
        segments = [(x0, y0, angle, length)]
        for t in rng.uniform(0.2, 0.9, size=int(rng.integers(1, 5))):
            side_angle = angle + rng.choice((-1.0, 1.0)) * math.pi / 3
            segments.append((x0 + t * length * math.cos(angle), y0 + t * length * math.sin(angle), side_angle,
                             length * rng.uniform(0.2, 0.5)))
        for sx, sy, a, ln in segments:
            p0 = (int(sx * scale), int(sy * scale))
            p1 = (int((sx + ln * math.cos(a)) * scale), int((sy + ln * math.sin(a)) * scale))
            cv2.line(needles, p0, p1, value, 1, cv2.LINE_AA, 3)
    glow = cv2.GaussianBlur(needles, (0, 0), max(1.0, side / 150))
    crystals = np.clip(cv2.GaussianBlur(needles, (0, 0), 0.5) + 1.5 * glow, 0, 1)
    tex = np.clip(0.25 + 0.35 * haze**1.5 + 0.6 * crystals, 0, 1)
    tint = np.array([0.84, 0.92, 1.0], dtype=np.float32)
    return (tex[..., None] * tint * 255).astype(np.float32)


@lru_cache(maxsize=4)
def frost_textures(side: int) -> tuple[np.ndarray, ...]:
    """The procedural frost bank: ``_FROST_BANK_SIZE`` textures ``(side, side, 3)`` float32 on 0..255, fixed
    seeds (the same bank on every call and machine). Read-only arrays."""
    bank = []
    for k in range(_FROST_BANK_SIZE):
        tex = _draw_frost_texture(side, np.random.default_rng(20190501 + k))
        tex.setflags(write=False)
        bank.append(tex)
    return tuple(bank)


def frost(x: np.ndarray, c: tuple[float, float], rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """``c[0] * x + c[1] * texture`` with a random crop of a random procedural frost texture (0..255 scale)."""
    h, w = x.shape[1:3]
    side = 4 * max(h, w)
    bank = frost_textures(side)
    out = np.empty(x.shape, dtype=np.float32)
    for i, (xi, r) in enumerate(zip(x, rngs)):
        tex = bank[int(r.integers(len(bank)))]
        y0, x0 = int(r.integers(0, side - h + 1)), int(r.integers(0, side - w + 1))
        out[i] = c[0] * xi.astype(np.float32) + c[1] * tex[y0:y0 + h, x0:x0 + w]
    return np.clip(out, 0, 255)


def snow(x: np.ndarray, c: tuple[float, ...], rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Snow: a zoomed, thresholded normal field (``c[0..3]``) motion-blurred (radius ``c[4]``, sigma ``c[5]``,
    angle in [-135, -45)) and added twice (once rotated by 180 degrees) to an image whitened by ``1 - c[6]``."""
    loc, scale, zoom, threshold, radius, sigma, keep = c
    h, w = x.shape[1:3]
    xf = x.astype(np.float32) / 255.0
    out = np.empty_like(xf)
    for i, (xi, r) in enumerate(zip(xf, rngs)):
        layer = r.normal(loc, scale, size=(h, w)).astype(np.float32)
        layer = clipped_zoom(layer, zoom)
        layer[layer < threshold] = 0
        layer = np.floor(np.clip(layer, 0, 1) * 255)
        layer = np.rint(apply_motion_blur(layer, radius, sigma, r.uniform(-135, -45)))[..., None] / 255.0
        grey = cv2.cvtColor(xi, cv2.COLOR_RGB2GRAY)[..., None]
        whitened = keep * xi + (1 - keep) * np.maximum(xi, grey * 1.5 + 0.5)
        out[i] = whitened + layer + np.rot90(layer, k=2)
    return np.clip(out, 0, 1) * 255


def brightness(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Add ``c`` to the HSV value channel (clipped to 1); hue and saturation stay.

    Computed in RGB: with hue and saturation fixed every channel scales by ``V' / V``; black pixels become grey
    ``V' = c``, as in the HSV round trip.
    """
    xf = x.astype(np.float32) / 255.0
    v = xf.max(axis=-1, keepdims=True)
    v_new = np.clip(v + c, 0, 1)
    out = np.where(v > 0, xf * (v_new / np.maximum(v, 1e-12)), v_new)
    return np.clip(out, 0, 1) * 255


_WATER = np.array([175, 238, 238], dtype=np.float32) / 255.0  # pale turquoise
_MUD = np.array([63, 42, 20], dtype=np.float32) / 255.0
_SPATTER_EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)


def _water_mask(liquid: np.ndarray, gain: float) -> np.ndarray:
    """Shaded water-drop mask ``(H, W)`` in [0, gain] from a thresholded liquid layer."""
    liquid_u8 = np.clip(liquid * 255, 0, 255).astype(np.uint8)
    edges_free = 255 - cv2.Canny(liquid_u8, 50, 150)
    dist = cv2.distanceTransform(edges_free, cv2.DIST_L2, 5)
    dist = np.minimum(dist, 20)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    dist = cv2.filter2D(dist, cv2.CV_8U, _SPATTER_EMBOSS)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    mask = liquid_u8.astype(np.float32) * dist
    peak = mask.max()
    return mask / peak * gain if peak > 0 else mask


def spatter(x: np.ndarray, c: tuple[float, ...], rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Water drops (``c[5] == 0``: a shaded turquoise layer is added) or mud (``c[5] == 1``: brown blotches
    replace the image) from a smoothed, thresholded normal field (``loc, scale, sigma, threshold = c[:4]``)."""
    loc, scale, sigma, threshold, gain, mud = c
    h, w = x.shape[1:3]
    xf = x.astype(np.float32) / 255.0
    out = np.empty_like(xf)
    for i, (xi, r) in enumerate(zip(xf, rngs)):
        liquid = gaussian_smooth(r.normal(loc, scale, size=(h, w)), sigma, batched=False)
        liquid[liquid < threshold] = 0
        if not mud:
            out[i] = xi + _water_mask(liquid, gain)[..., None] * _WATER
        else:
            m = gaussian_smooth((liquid > threshold).astype(np.float32), gain, batched=False)
            m[m < 0.8] = 0
            out[i] = xi * (1 - m[..., None]) + _MUD * m[..., None]
    return np.clip(out, 0, 1) * 255
