"""Image stages: anything that maps a float ``(N, C, H, W)`` batch in ``[0, 1]`` to another one.

A stage is a callable ``stage(x) -> x'`` on the training device. :func:`as_stage` turns the supported objects into
stages: our own (:class:`~advbn_aug.image.AugMixBatch`, :class:`~advbn_aug.image.DeepAugment`), any
``kornia.augmentation`` module or container (:class:`KorniaStage`), any ``albumentations`` transform or ``Compose``
(:class:`AlbumentationsStage`, per image on the CPU), or a plain function wrapped in :class:`FnStage`.
:class:`RandomApply` applies a stage to a random subset of the batch (per-sample probability ``p``).

Stages can also be built from plain dicts (YAML), see :func:`build_stage`::

    {"type": "kornia", "name": "RandomHorizontalFlip", "kwargs": {"p": 0.5}}
    {"type": "albumentations", "transforms": [{"name": "GaussNoise", "kwargs": {"p": 0.5}}]}
    {"type": "augmix", "severity": 3, "width": 3}
    {"type": "deepaugment", "weights": "cae.pt", "strength": 1.0}
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["KorniaStage", "AlbumentationsStage", "FnStage", "RandomApply", "as_stage", "build_stage",
           "register_stage", "STAGE_TYPES", "check_image_batch"]


def check_image_batch(x: Any, who: str) -> None:
    """Raise a clear error unless ``x`` is a float ``(N, C, H, W)`` tensor with ``C`` in {1, 3}."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} takes a torch.Tensor (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        hint = " (channels-last? use x.permute(0, 3, 1, 2))" if x.dim() == 4 and x.shape[-1] in (1, 3) else ""
        raise ValueError(f"{who} expects (N, C, H, W) with C in {{1, 3}}, got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{who} expects a float tensor in [0, 1], got {x.dtype}; convert uint8 images with "
                        "x.float() / 255")


def _is_from(obj: Any, package: str) -> bool:
    return type(obj).__module__.split(".")[0] == package.split(".")[0] and type(obj).__module__.startswith(package)


class KorniaStage(nn.Module):
    """Adapter for a ``kornia.augmentation`` module or container (float ``(N, C, H, W)`` in and out)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        if not _is_from(module, "kornia.augmentation"):
            raise TypeError(f"KorniaStage wraps kornia.augmentation modules, got {type(module).__name__}")
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, "KorniaStage")
        out = self.module(x)
        if isinstance(out, (tuple, list)):  # containers with several data_keys return one output per key
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != x.shape[0]:
            raise ValueError(f"{type(self.module).__name__} returned {getattr(out, 'shape', type(out))}; a stage "
                             "must return one (N, C, H, W) image batch")
        return out.clamp(0.0, 1.0).to(x.dtype)


class AlbumentationsStage:
    """Adapter for an ``albumentations`` transform or ``Compose``: runs it per image on HWC ``uint8`` arrays.

    ``(N, C, H, W)`` float in ``[0, 1]`` -> the same layout, dtype and device. The images go through the CPU, so
    this stage suits dataset-side work or small batches; prefer kornia on a GPU.
    """

    def __init__(self, transform: Any):
        if not _is_from(transform, "albumentations"):
            raise TypeError(f"AlbumentationsStage wraps albumentations transforms, got {type(transform).__name__}")
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
        self.transform = transform

    def __repr__(self) -> str:
        return f"AlbumentationsStage({self.transform.__class__.__name__})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, "AlbumentationsStage")
        arr = (x.detach() * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        outs = []
        for img in arr:
            res = self.transform(image=np.ascontiguousarray(img))["image"]
            if res.ndim == 2:
                res = res[:, :, None]
            outs.append(res)
        if any(o.shape != outs[0].shape for o in outs):
            raise ValueError("the albumentations transform returned images of different sizes; add a fixed-size "
                             "Resize/CenterCrop at the end so a batch can be stacked")
        out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2)
        out = out.float() / 255.0 if out.dtype == torch.uint8 else out.float().clamp(0.0, 1.0)
        return out.to(device=x.device, dtype=x.dtype)


class FnStage:
    """A plain function ``f(x) -> x`` on float ``(N, C, H, W)`` batches, declared as a stage."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "fn")

    def __repr__(self) -> str:
        return f"FnStage({self.name})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class RandomApply:
    """Apply ``stage`` to each sample with probability ``p`` (the others pass through unchanged)."""

    def __init__(self, stage: Any, p: float = 1.0):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"stage probability p must be in [0, 1], got {p}")
        self.stage = as_stage(stage)
        self.p = float(p)

    def __repr__(self) -> str:
        return f"RandomApply({self.stage!r}, p={self.p})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.p >= 1.0:
            return self.stage(x)
        if self.p <= 0.0:
            return x
        sel = torch.rand(x.shape[0], device=x.device) < self.p
        idx = sel.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        out = self.stage(x.index_select(0, idx))
        if out.shape[1:] != x.shape[1:]:
            raise ValueError(f"{self.stage!r} changed the image size from {tuple(x.shape[1:])} to "
                             f"{tuple(out.shape[1:])}; a stage with p < 1 must keep the size")
        return x.index_copy(0, idx, out.to(x.dtype))


def _is_own_stage(obj: Any) -> bool:
    from .augmix import AugMixBatch
    from .deepaugment import DeepAugment

    return isinstance(obj, (AugMixBatch, DeepAugment, KorniaStage, AlbumentationsStage, FnStage, RandomApply))


def as_stage(obj: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``obj`` into a stage (a callable on float ``(N, C, H, W)`` batches in ``[0, 1]``)."""
    if _is_own_stage(obj):
        return obj
    if _is_from(obj, "kornia.augmentation"):
        return KorniaStage(obj)
    if _is_from(obj, "albumentations"):
        return AlbumentationsStage(obj)
    if isinstance(obj, dict):
        return build_stage(obj)
    raise TypeError(f"unknown stage type {type(obj).__module__}.{type(obj).__name__}: a stage is a kornia."
                    "augmentation module/container, an albumentations transform/Compose, AugMixBatch, DeepAugment, "
                    "a spec dict ({'type': ...}), or a tensor function wrapped in FnStage(fn)")


# ---------------------------------------------------------------------------------------- dict specs
def _build_kornia(spec: dict[str, Any]) -> KorniaStage:
    import kornia.augmentation as K

    def one(item: dict[str, Any]) -> nn.Module:
        name = item.get("name")
        cls = getattr(K, str(name), None)
        if cls is None:
            raise ValueError(f"kornia.augmentation has no {name!r}; use a class name such as 'RandomHorizontalFlip'")
        return cls(**item.get("kwargs", {}))

    if "transforms" in spec:
        return KorniaStage(K.AugmentationSequential(*[one(t) for t in spec["transforms"]]))
    return KorniaStage(one(spec))


def _build_albumentations(spec: dict[str, Any]) -> AlbumentationsStage:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations as A
    except ImportError as err:  # optional extra
        raise ImportError("albumentations stages need the optional extra: pip install 'advbn-aug[albumentations]'"
                          ) from err

    def one(item: dict[str, Any]) -> Any:
        name = item.get("name")
        cls = getattr(A, str(name), None)
        if cls is None:
            raise ValueError(f"albumentations has no {name!r}; use a class name such as 'HorizontalFlip'")
        return cls(**item.get("kwargs", {}))

    items = spec["transforms"] if "transforms" in spec else [spec]
    return AlbumentationsStage(A.Compose([one(t) for t in items]))


def _build_augmix(spec: dict[str, Any]) -> Any:
    from .augmix import AugMixBatch

    return AugMixBatch(**spec)


def _build_deepaugment(spec: dict[str, Any]) -> Any:
    from .deepaugment import DeepAugment

    return DeepAugment.from_spec(spec)


STAGE_TYPES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "kornia": _build_kornia,
    "albumentations": _build_albumentations,
    "augmix": _build_augmix,
    "deepaugment": _build_deepaugment,
}


def register_stage(type_name: str, builder: Callable[[dict[str, Any]], Any]) -> None:
    """Make ``{"type": type_name, ...}`` specs buildable; ``builder`` gets the spec without ``type`` and ``p``."""
    STAGE_TYPES[type_name] = builder


def build_stage(spec: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build a stage from ``{"type": ..., "p": ..., **settings}``; ``p < 1`` wraps it in :class:`RandomApply`."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a stage spec is a dict with a 'type' key (one of {sorted(STAGE_TYPES)}), got {spec!r}")
    rest = {k: v for k, v in spec.items() if k not in ("type", "p")}
    kind = spec["type"]
    if kind not in STAGE_TYPES:
        raise ValueError(f"unknown stage type {kind!r}; known types: {sorted(STAGE_TYPES)} "
                         "(register new ones with advbn_aug.image.register_stage)")
    stage = STAGE_TYPES[kind](rest)
    p = float(spec.get("p", 1.0))
    return RandomApply(stage, p) if p < 1.0 else stage
