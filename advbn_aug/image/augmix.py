"""AugMix (Hendrycks, Mu, Cubuk, Zoph, Gilmer, Lakshminarayanan, ICLR 2020, arXiv 1912.02781).

Each image gets ``width`` chains of ``depth`` (random 1-3) ops drawn from the paper's list; the chains are mixed with
Dirichlet(alpha) weights and the mix is blended with the original image by ``m ~ Beta(alpha, alpha)``. The paper
excludes ops that overlap ImageNet-C (brightness, colour, contrast, sharpness); ``all_ops=True`` adds them back.

Two execution paths:

* :class:`AugMix` / :class:`AugMixViews`: per-image dataset transforms (PIL or HWC ``uint8`` numpy, safe in
  DataLoader workers). They run timm's ``AugMixAugment`` with an op list restricted to the paper's ops (timm's default
  list adds colour/contrast/brightness/sharpness "Increasing" ops that are not in the paper), black fill, bilinear
  resampling and translations up to 1/3 of the image as in the paper's code.
* :class:`AugMixBatch`: a batched tensor path (torch) for the training device. Parameters are generated per sample
  (:meth:`AugMixBatch.forward_parameters`), so every sample of a batch gets its own op chains, then applied in one go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from advbn_aug.config import DictConfig
from advbn_aug.image.augmix_ops import GEOMETRIC_OPS, MAX_SEVERITY, PIXEL_OPS, TRANSLATE_FRAC, affine_matrices, warp
from advbn_aug.image.checks import check_image_batch

__all__ = ["AUGMIX_OPS", "AUGMIX_ALL_OPS", "AugMixConfig", "AugMix", "AugMixViews", "AugMixBatch"]

AUGMIX_OPS: tuple[str, ...] = ("autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y",
                               "translate_x", "translate_y")
AUGMIX_ALL_OPS: tuple[str, ...] = AUGMIX_OPS + ("color", "contrast", "brightness", "sharpness")

# our op name -> timm AugmentOp name with the paper's level mapping
_TIMM_NAMES = {
    "autocontrast": "AutoContrast", "equalize": "Equalize", "posterize": "PosterizeIncreasing", "rotate": "Rotate",
    "solarize": "SolarizeIncreasing", "shear_x": "ShearX", "shear_y": "ShearY", "translate_x": "TranslateXRel",
    "translate_y": "TranslateYRel", "color": "Color", "contrast": "Contrast", "brightness": "Brightness",
    "sharpness": "Sharpness",
}


@dataclass
class AugMixConfig(DictConfig):
    """AugMix settings; the defaults are the paper's.

    Args:
        severity: op strength, 1-10 (levels are drawn uniformly up to it).
        width: number of mixed chains (>= 1).
        depth: ops per chain; ``-1`` draws 1-3 per chain.
        alpha: Dirichlet / Beta concentration.
        all_ops: add brightness/colour/contrast/sharpness (excluded by the paper: they overlap ImageNet-C).
        ops: explicit op names (overrides ``all_ops``); any of :data:`AUGMIX_ALL_OPS`.
    """

    severity: int = 3
    width: int = 3
    depth: int = -1
    alpha: float = 1.0
    all_ops: bool = False
    ops: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.severity, bool) or not 1 <= self.severity <= MAX_SEVERITY:
            raise ValueError(f"AugMix severity must be in [1, {MAX_SEVERITY}], got {self.severity} "
                             "(the paper uses 3)")
        if not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"AugMix width must be an integer >= 1 (number of chains; the paper uses 3), "
                             f"got {self.width!r}")
        if not isinstance(self.depth, int) or not (self.depth == -1 or 1 <= self.depth <= 10):
            raise ValueError(f"AugMix depth must be -1 (random 1-3, the paper's) or an integer in [1, 10], "
                             f"got {self.depth!r}")
        if not self.alpha > 0:
            raise ValueError(f"AugMix alpha must be > 0, got {self.alpha}")
        if self.ops is not None:
            self.ops = list(self.ops)
        self.op_names()  # validates

    def op_names(self) -> tuple[str, ...]:
        """The resolved op list."""
        if self.ops is None:
            return AUGMIX_ALL_OPS if self.all_ops else AUGMIX_OPS
        if len(self.ops) == 0:
            raise ValueError("AugMix ops is empty: pass None for the paper's ops or a non-empty list of op names")
        bad = [o for o in self.ops if o not in AUGMIX_ALL_OPS]
        if bad:
            raise ValueError(f"unknown AugMix op(s) {bad}; valid ops: {list(AUGMIX_ALL_OPS)}")
        return tuple(self.ops)


def _config(config: AugMixConfig | dict | None, kwargs: dict[str, Any]) -> AugMixConfig:
    if config is None:
        return AugMixConfig(**kwargs)
    if kwargs:
        raise TypeError("pass either config or keyword settings, not both")
    return config if isinstance(config, AugMixConfig) else AugMixConfig.from_dict(config)


# ====================================================================== per-image path (timm)
class AugMix:
    """Per-image AugMix: ``PIL.Image`` or HWC ``uint8`` array in, the same type out (one mixed image).

    Uses timm's ``AugMixAugment`` with the paper's op list; randomness comes from Python's ``random`` and numpy's
    global generator (seeded per DataLoader worker by PyTorch).

    Example::

        aug = AugMix(severity=3, width=3)          # or AugMix(config=AugMixConfig(...))
        mixed = aug(pil_image)
    """

    def __init__(self, config: AugMixConfig | dict | None = None, **kwargs: Any):
        from PIL import Image
        from timm.data.auto_augment import AugMixAugment, augmix_ops

        self.config = _config(config, kwargs)
        c = self.config
        hparams = {
            "translate_pct": TRANSLATE_FRAC,
            "img_mean": (0, 0, 0),  # the paper's PIL calls fill with black
            "interpolation": Image.BILINEAR,
            "magnitude_std": float("inf"),  # uniform level in [0, severity], like the paper's sample_level
        }
        names = [_TIMM_NAMES[o] for o in c.op_names()]
        self._timm = AugMixAugment(augmix_ops(magnitude=c.severity, hparams=hparams, transforms=names),
                                   alpha=c.alpha, width=c.width, depth=c.depth)

    def __repr__(self) -> str:
        c = self.config
        return f"AugMix(severity={c.severity}, width={c.width}, depth={c.depth}, ops={list(c.op_names())})"

    def __call__(self, img: Any) -> Any:
        from PIL import Image

        if isinstance(img, Image.Image):
            return self._timm(img if img.mode == "RGB" else img.convert("RGB"))
        if isinstance(img, np.ndarray):
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise TypeError(f"AugMix takes a PIL image or an HWC uint8 RGB array, got an array of shape "
                                f"{img.shape} and dtype {img.dtype}; for (N, C, H, W) tensors use AugMixBatch")
            return np.asarray(self._timm(Image.fromarray(img)))
        raise TypeError(f"AugMix takes a PIL image or an HWC uint8 numpy array, got {type(img).__name__}; "
                        "for batched tensors use AugMixBatch")


class AugMixViews:
    """Dataset transform returning ``(clean, aug_1, ..., aug_k)``, each passed through ``preprocess``.

    ``preprocess`` is typically ``ToTensor`` + ``Normalize``; with the default collate a batch becomes a tuple of
    ``k + 1`` tensors, and ``torch.cat(views)`` is the split-ordered batch that the JSD loss expects.
    """

    def __init__(self, augmix: AugMix | None = None, num_views: int = 2,
                 preprocess: Callable[[Any], Any] | None = None):
        if not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f"num_views must be an integer >= 1 (the paper uses 2), got {num_views!r}")
        self.augmix = augmix or AugMix()
        self.num_views = num_views
        self.preprocess = preprocess or (lambda x: x)

    def __call__(self, img: Any) -> tuple[Any, ...]:
        return (self.preprocess(img),) + tuple(self.preprocess(self.augmix(img)) for _ in range(self.num_views))


# ====================================================================== batched tensor path (ops: augmix_ops)
class AugMixBatch(nn.Module):
    """Batched AugMix on float ``(N, C, H, W)`` tensors in ``[0, 1]`` (``C`` in {1, 3}; any device, no grad).

    Every sample gets its own ``width`` chains of ops and its own mixing weights. All chains of a batch are processed
    together: per depth slot, one bilinear warp for the geometric ops and one call per pixel op on the samples that
    drew it. ``select`` picks how: ``"index"`` gathers the samples of each op (least compute, one host sync per op;
    the CPU default), ``"where"`` runs each op on all rows and selects with ``torch.where`` (no host syncs; the CUDA
    default). Both give identical results for the same parameters.

    Example::

        aug = AugMixBatch(severity=3, width=3).to(device)
        views = aug.views(images, num_views=2)      # (3N, C, H, W): [images; aug1; aug2]
    """

    def __init__(self, config: AugMixConfig | dict | None = None, *, select: str = "auto", check_range: bool = True,
                 **kwargs: Any):
        super().__init__()
        self.config = _config(config, kwargs)
        if select not in ("auto", "index", "where"):
            raise ValueError(f"select must be 'auto', 'index' or 'where', got {select!r}")
        self.select = select
        self.check_range = check_range
        self.op_names = self.config.op_names()

    def extra_repr(self) -> str:
        c = self.config
        return f"severity={c.severity}, width={c.width}, depth={c.depth}, ops={list(self.op_names)}"

    # ------------------------------------------------------------ parameters
    def forward_parameters(self, batch_size: int, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """Draw the random parameters for a batch (global torch RNG).

        Returns a dict of tensors: ``op`` (W, D, N) op indices, ``level`` (W, D, N) in ``[0.1, severity]``,
        ``sign`` (W, D, N) of +-1, ``depth`` (W, N) in 1..3 (or the fixed depth), ``ws`` (N, W) Dirichlet chain
        weights and ``m`` (N,) Beta mixing weights; ``W`` is the width and ``D`` the maximum depth.
        """
        c = self.config
        n, wd = batch_size, c.width
        dmax = 3 if c.depth <= 0 else c.depth
        op = torch.randint(len(self.op_names), (wd, dmax, n), device=device)
        level = torch.empty(wd, dmax, n, device=device).uniform_(0.1, float(c.severity))
        sign = torch.randint(0, 2, (wd, dmax, n), device=device) * 2 - 1
        if c.depth <= 0:
            depth = torch.randint(1, 4, (wd, n), device=device)
        else:
            depth = torch.full((wd, n), c.depth, device=device, dtype=torch.long)
        alpha = torch.tensor(float(c.alpha), device=device)
        ws = torch.distributions.Dirichlet(alpha.expand(wd)).sample((n,))
        m = torch.distributions.Beta(alpha, alpha).sample((n,))
        return {"op": op, "level": level, "sign": sign, "depth": depth, "ws": ws, "m": m}

    # ------------------------------------------------------------ application
    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"AugMixBatch takes a tensor, got {type(x).__name__}; for PIL/numpy images use AugMix")
        check_image_batch(x, "AugMixBatch")
        if self.check_range and x.numel() and (float(x.amin()) < -1e-3 or float(x.amax()) > 1 + 1e-3):
            raise ValueError("AugMixBatch expects values in [0, 1] (un-normalised images); apply the mean/std "
                             "normalisation after augmentation, or pass check_range=False")

    def _use_where(self, x: torch.Tensor) -> bool:
        return self.select == "where" or (self.select == "auto" and x.device.type != "cpu")

    def _apply_op(self, xs: torch.Tensor, sel: torch.Tensor, fn: Callable[..., torch.Tensor], *args: torch.Tensor
                  ) -> torch.Tensor:
        if self._use_where(xs):
            return torch.where(sel.view(-1, 1, 1, 1), fn(xs, *args), xs)
        idx = sel.nonzero().squeeze(1)
        if idx.numel() == 0:
            return xs
        out = fn(xs.index_select(0, idx), *(a.index_select(0, idx) for a in args))
        return xs.index_copy(0, idx, out.to(xs.dtype))

    @torch.no_grad()
    def forward(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """One AugMix image per sample: ``(N, C, H, W) -> (N, C, H, W)``, same dtype, values in ``[0, 1]``."""
        self._check(x)
        n, c, h, w = x.shape
        if params is None:
            params = self.forward_parameters(n, x.device)
        wd = self.config.width
        dmax = params["op"].shape[1]
        xs = x.unsqueeze(0).expand(wd, n, c, h, w).reshape(wd * n, c, h, w).clone()
        geo_ids = torch.tensor([k for k, o in enumerate(self.op_names) if o in GEOMETRIC_OPS], device=x.device)
        for d in range(dmax):
            op = params["op"][:, d].reshape(-1)
            level = params["level"][:, d].reshape(-1)
            sign = params["sign"][:, d].reshape(-1)
            active = params["depth"].reshape(-1) > d
            if geo_ids.numel():
                sel = active & torch.isin(op, geo_ids)
                mat = affine_matrices(self.op_names, op, level, sign, h, w)
                xs = self._apply_op(xs, sel, warp, mat)
            for k, name in enumerate(self.op_names):
                if name in PIXEL_OPS:
                    xs = self._apply_op(xs, active & (op == k), PIXEL_OPS[name], level)
        ws = params["ws"].t().reshape(wd, n, 1, 1, 1).to(x.dtype)
        mix = (ws * xs.view(wd, n, c, h, w)).sum(0)
        m = params["m"].view(n, 1, 1, 1).to(x.dtype)
        return ((1.0 - m) * x + m * mix).clamp(0.0, 1.0)

    def views(self, x: torch.Tensor, num_views: int = 2) -> torch.Tensor:
        """``[x; augmix(x); ...]`` concatenated along the batch: ``(N, C, H, W) -> ((1 + num_views) N, C, H, W)``."""
        if not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f"num_views must be an integer >= 1 (the paper uses 2), got {num_views!r}")
        return torch.cat([x] + [self(x) for _ in range(num_views)])
