"""The batched tensor ops of :class:`~advbn_aug.image.augmix.AugMixBatch`: PIL-equivalent pixel ops on float
``(B, C, H, W)`` batches in ``[0, 1]`` with one level per row, and the geometric ops as per-row affine maps applied by
one bilinear warp."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["MAX_SEVERITY", "TRANSLATE_FRAC", "GEOMETRIC_OPS", "PIXEL_OPS", "affine_matrices", "warp"]

MAX_SEVERITY = 10  # levels are fractions of 10 (the paper's and timm's scale)
TRANSLATE_FRAC = 1.0 / 3.0  # the paper translates by up to IMAGE_SIZE / 3 pixels (both AugMix paths)
GEOMETRIC_OPS: tuple[str, ...] = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")  # applied by warp


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma (PIL's ``convert('L')``), ``(B, C, H, W) -> (B, 1, H, W)``."""
    if x.shape[1] == 1:
        return x
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)).clamp(0.0, 1.0)


def _to_levels(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round().clamp(0, 255).long()


def _autocontrast(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), x)


def _equalize(x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageOps.equalize`` semantics, per channel, batched with one scatter."""
    b, c, h, w = x.shape
    v = _to_levels(x).view(b * c, h * w)
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, v, torch.ones_like(v))
    bins = torch.arange(256, device=x.device)
    last = torch.where(hist > 0, bins, torch.zeros_like(bins)).amax(1, keepdim=True)
    step = (h * w - hist.gather(1, last)) // 255
    cum = torch.cumsum(hist, 1) - hist  # exclusive
    lut = ((step // 2 + cum) // step.clamp_min(1)).clamp(0, 255)
    lut = torch.where(step > 0, lut, bins.expand_as(lut))
    return (lut.gather(1, v).view(b, c, h, w).to(x.dtype)) / 255.0


def _posterize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    bits = 4 - (level / MAX_SEVERITY * 4).long()  # keep 4 down to 3 bits at severity 3 (paper)
    mask = (256 - (1 << (8 - bits))).view(-1, 1, 1, 1)
    return (torch.floor(x * 255.0).clamp(0, 255).long() & mask).to(x.dtype) / 255.0


def _solarize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    thresh = (256 - (level / MAX_SEVERITY * 256).long()).view(-1, 1, 1, 1)
    return torch.where(_to_levels(x) >= thresh, 1.0 - x, x)


def _enhance_factor(level: torch.Tensor) -> torch.Tensor:
    return level / MAX_SEVERITY * 1.8 + 0.1


def _color(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    return _blend(_gray(x).expand_as(x), x, _enhance_factor(level))


def _contrast(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(mean.expand_as(x), x, _enhance_factor(level))


def _brightness(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    return _blend(torch.zeros_like(x), x, _enhance_factor(level))


def _sharpness(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    k = x.new_tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    c = x.shape[1]
    smooth = F.conv2d(x, k.expand(c, 1, 3, 3), groups=c)  # PIL's SMOOTH filter; borders keep the original
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth
    return _blend(degenerate, x, _enhance_factor(level))


# name -> op(x (B, C, H, W) in [0, 1], level (B,)) -> (B, C, H, W), the PIL semantics of timm's AugMix ops
PIXEL_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "autocontrast": _autocontrast, "equalize": _equalize, "posterize": _posterize, "solarize": _solarize,
    "color": _color, "contrast": _contrast, "brightness": _brightness, "sharpness": _sharpness,
}


def affine_matrices(op_names: Sequence[str], op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor,
                    h: int, w: int) -> torch.Tensor:
    """Per-row output->input affine maps in PIL pixel coordinates (origin at the top-left corner), ``(B, 3, 3)``.

    ``op`` ``(B,)`` indexes ``op_names``; ``level`` ``(B,)`` in ``[0, MAX_SEVERITY]`` and ``sign`` ``(B,)`` of +-1
    set the strength and direction; rows whose op is not geometric get the identity. ``h``, ``w``: the image size."""
    b = op.shape[0]
    mat = torch.eye(3, device=op.device, dtype=torch.float32).repeat(b, 1, 1)
    frac = level.float() / MAX_SEVERITY * sign.float()
    for k, name in enumerate(op_names):
        sel = op == k
        if name == "rotate":  # PIL rotate(deg): counter-clockwise about the centre
            a = torch.deg2rad(frac * 30.0)
            cos, sin = torch.cos(a), torch.sin(a)
            cx, cy = w / 2.0, h / 2.0
            rot = torch.stack([
                torch.stack([cos, -sin, cx - cos * cx + sin * cy], -1),
                torch.stack([sin, cos, cy - sin * cx - cos * cy], -1),
                torch.tensor([0.0, 0.0, 1.0], device=op.device).expand(b, 3),
            ], 1)
            mat = torch.where(sel.view(-1, 1, 1), rot, mat)
        elif name in ("shear_x", "shear_y", "translate_x", "translate_y"):
            m = torch.eye(3, device=op.device).repeat(b, 1, 1)
            if name == "shear_x":
                m[:, 0, 1] = frac * 0.3
            elif name == "shear_y":
                m[:, 1, 0] = frac * 0.3
            elif name == "translate_x":
                m[:, 0, 2] = frac * TRANSLATE_FRAC * w
            else:
                m[:, 1, 2] = frac * TRANSLATE_FRAC * h
            mat = torch.where(sel.view(-1, 1, 1), m, mat)
    return mat


def warp(x: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """Bilinear warp with black fill: ``x`` ``(B, C, H, W)``, ``mat`` ``(B, 3, 3)`` (:func:`affine_matrices`) mapping
    output to input pixel coordinates (pixel centres at +0.5) -> ``(B, C, H, W)``."""
    h, w = x.shape[-2:]
    norm = torch.tensor([[2.0 / w, 0.0, -1.0], [0.0, 2.0 / h, -1.0], [0.0, 0.0, 1.0]], device=x.device)
    theta = norm @ mat @ torch.linalg.inv(norm)
    grid = F.affine_grid(theta[:, :2].to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
