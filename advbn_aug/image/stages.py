"""Image stages: anything that maps a float ``(N, C, H, W)`` batch in ``[0, 1]`` to another one.

A stage is a callable ``stage(x) -> x'`` on the training device. :func:`as_stage` turns the supported objects into
stages: our own (:class:`~advbn_aug.image.AugMixBatch`, :class:`~advbn_aug.image.DeepAugment`), any
``kornia.augmentation`` module or container (:class:`KorniaStage`), any ``albumentations`` transform or ``Compose``
(:class:`AlbumentationsStage`, per image on the CPU), or a plain function wrapped in :class:`FnStage`.
:class:`RandomApply` applies a stage to a random subset of the batch (per-sample probability ``p``).

Stages can also be built from plain dicts (YAML), see :func:`build_stage`::

    {"type": "kornia", "name": "RandomHorizontalFlip", "p": 0.5}
    {"type": "kornia", "name": "ColorJitter", "kwargs": {"brightness": 0.2}}
    {"type": "albumentations", "transforms": [{"name": "GaussNoise", "p": 0.5}, {"name": "HorizontalFlip"}]}
    {"type": "augmix", "severity": 3, "width": 3, "p": 0.5}
    {"type": "deepaugment", "weights": "cae.pt", "strength": 1.0}

``p`` is always the probability that the op (or stage) is applied to an image, default 1: kornia and albumentations
ops receive it as their own ``p`` (their defaults, e.g. 0.5 for flips, never apply), other stages are wrapped in
:class:`RandomApply`. Op arguments go under ``kwargs``; unknown keys raise, naming the valid ones.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch import nn

from advbn_aug.image.augmix import AugMixBatch, AugMixConfig
from advbn_aug.image.checks import check_image_batch
from advbn_aug.image.deepaugment import DeepAugment

__all__ = ["KorniaStage", "AlbumentationsStage", "FnStage", "RandomApply", "as_stage", "build_stage",
           "register_stage", "STAGE_TYPES", "check_image_batch"]


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
_OP_KEYS = ("name", "kwargs", "p")
_LIST_KEYS = ("transforms", "p")


def _near(words: list[str], options: list[str]) -> str:
    """`` (did you mean 'x'?)`` for misspellings of ``options``, else ``""``."""
    near = [m for w in words for m in difflib.get_close_matches(w, options, n=1)]
    return f" (did you mean {', '.join(repr(m) for m in near)}?)" if near else ""


def _check_keys(what: str, given: dict[str, Any], valid: list[str], hint: str = "") -> None:
    """Raise ``ValueError`` naming the keys of ``given`` not in ``valid``, and the valid ones."""
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in the {what}{_near(unknown, valid)}; valid keys: "
                         f"{sorted(valid)}{hint}")


def _arguments(cls: Any) -> list[str] | None:
    """The keyword arguments ``cls(...)`` takes; ``None`` when it takes any (``**kwargs``)."""
    params = inspect.signature(cls).parameters.values()
    if any(q.kind is q.VAR_KEYWORD for q in params):
        return None
    return [q.name for q in params if q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)]


def _probability(value: Any, what: str) -> float:
    """``value`` (a number, or a number string from YAML) as a probability in ``[0, 1]``."""
    try:
        p = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        p = math.nan
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1] (that the op is applied), got {value!r}")
    return p


def _op_probability(item: dict[str, Any], kwargs: dict[str, Any], what: str) -> float:
    """The probability that the op is applied: the spec's ``p`` or the op's own ``kwargs["p"]``, default 1."""
    if "p" in item and "p" in kwargs:
        raise ValueError(f"{what} gives p={item['p']!r} and kwargs p={kwargs['p']!r}: give p once, as the spec's "
                         "'p' (the probability that the op is applied)")
    return _probability(item.get("p", kwargs.get("p", 1.0)), f"{what}: p")


def _build_op(lib: Any, lib_name: str, item: Any, example: str) -> tuple[Any, float]:
    """One op from ``{"name", "kwargs", "p"}`` as ``(op, p_left)``. An op with its own ``p`` argument gets the spec's
    probability there (``p_left`` is 1: the op draws it, once); any other is built as is, ``p_left`` for the caller."""
    if not isinstance(item, dict):
        raise ValueError(f"a {lib_name} op spec is a dict {{'name': ..., 'kwargs': {{...}}, 'p': ...}}, got {item!r}")
    name = item.get("name")
    if name is None:
        raise ValueError(f"a {lib_name} spec needs 'name' (one op, e.g. {example!r}) or 'transforms' (a list of op "
                         f"specs), got {item!r}")
    cls = getattr(lib, str(name), None)
    if not isinstance(cls, type):
        raise ValueError(f"{lib_name} has no {name!r}; use a class name such as {example!r}")
    args = _arguments(cls)
    _check_keys(f"{lib_name} spec for {name}", item, list(_OP_KEYS),
                f"; arguments of the op go under 'kwargs' ({name} takes {args})" if args else "")
    kwargs = item.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"'kwargs' of the {lib_name} spec for {name} must be a mapping of its arguments, got "
                         f"{kwargs!r}")
    bad = [k for k in kwargs if args is not None and k not in args]
    if bad:
        raise ValueError(f"{name} has no argument(s) {bad}{_near(bad, args or [])}; valid arguments: {args}")
    p = _op_probability(item, kwargs, f"the {lib_name} spec for {name}")
    if "p" in inspect.signature(cls).parameters:
        return cls(**{**kwargs, "p": p}), 1.0
    return cls(**kwargs), p


def _listed(spec: dict[str, Any], lib_name: str) -> list[Any]:
    """The ``transforms`` list of a container spec (keys checked)."""
    _check_keys(f"{lib_name} stage spec (a transforms list)", spec, list(_LIST_KEYS),
                "; a single op is {'name': ..., 'kwargs': {...}, 'p': ...} without 'transforms'")
    items = spec["transforms"]
    if not isinstance(items, list) or not items:
        raise ValueError(f"'transforms' of a {lib_name} stage spec must be a non-empty list of op specs, got {items!r}")
    return items


def _inner(op_and_p: tuple[Any, float]) -> Any:
    op, p = op_and_p
    if p < 1.0:
        raise ValueError(f"{type(op).__name__} takes no p argument, so it cannot be applied with probability {p} "
                         "inside a transforms list: give it a stage of its own")
    return op


def _build_kornia(spec: dict[str, Any]) -> Any:
    """Spec with ``p``: a single op gets it as its own ``p``; a ``transforms`` list is applied with probability
    ``p``."""
    import kornia.augmentation as K

    if "transforms" in spec:
        items = _listed(spec, "kornia")
        stage, p = KorniaStage(K.AugmentationSequential(*[_inner(_build_op(K, "kornia", t, "RandomHorizontalFlip"))
                                                         for t in items])), float(spec.get("p", 1.0))
    else:
        op, p = _build_op(K, "kornia", spec, "RandomHorizontalFlip")
        stage = KorniaStage(op)
    return RandomApply(stage, p) if p < 1.0 else stage


def _build_albumentations(spec: dict[str, Any]) -> AlbumentationsStage:
    """Spec with ``p``: a single op gets it as its own ``p``; a ``transforms`` list as its ``Compose``'s ``p``."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations as A
    except ImportError as err:  # optional extra
        raise ImportError("albumentations stages need the optional extra: pip install 'advbn-aug[albumentations]'"
                          ) from err

    if "transforms" in spec:
        ops = [_inner(_build_op(A, "albumentations", t, "HorizontalFlip")) for t in _listed(spec, "albumentations")]
        return AlbumentationsStage(A.Compose(ops, p=float(spec.get("p", 1.0))))
    op, p = _build_op(A, "albumentations", spec, "HorizontalFlip")
    return AlbumentationsStage(A.Compose([op], p=p))


def _build_augmix(spec: dict[str, Any]) -> Any:
    _check_keys("augmix stage spec", spec, [f.name for f in fields(AugMixConfig)] + ["select", "check_range", "p"])
    return AugMixBatch(**spec)


def _build_deepaugment(spec: dict[str, Any]) -> Any:
    valid = ["weights", *[a for a in _arguments(DeepAugment) or [] if a != "net"], "p"]
    _check_keys("deepaugment stage spec", spec, valid)
    return DeepAugment.from_spec(spec)


STAGE_TYPES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "kornia": _build_kornia,
    "albumentations": _build_albumentations,
    "augmix": _build_augmix,
    "deepaugment": _build_deepaugment,
}


def register_stage(type_name: str, builder: Callable[[dict[str, Any]], Any]) -> None:
    """Make ``{"type": type_name, ...}`` specs buildable; ``builder`` gets the spec without ``type`` and ``p`` (and
    should reject unknown keys); ``p < 1`` wraps what it returns in :class:`RandomApply`."""
    STAGE_TYPES[type_name] = builder


def build_stage(spec: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build a stage from ``{"type": ..., "p": ..., **settings}``.

    ``p`` (default 1) is the probability that the stage is applied to each image. kornia and albumentations ops
    get it as their own ``p`` (an op's ``kwargs`` may give ``p`` instead, with the same meaning, but not both), so it
    never compounds with the op's default; other stages with ``p < 1`` are wrapped in :class:`RandomApply`. Unknown
    keys, and op arguments the op does not take, raise ``ValueError`` naming the valid ones."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a stage spec is a dict with a 'type' key (one of {sorted(STAGE_TYPES)}), got {spec!r}")
    kind = spec["type"]
    if kind not in STAGE_TYPES:
        raise ValueError(f"unknown stage type {kind!r}; known types: {sorted(STAGE_TYPES)} "
                         "(register new ones with advbn_aug.image.register_stage)")
    builder = STAGE_TYPES[kind]
    p = _probability(spec.get("p", 1.0), f"the p of the {kind} stage")
    if builder in (_build_kornia, _build_albumentations):  # the op draws p itself
        return builder({k: v for k, v in spec.items() if k != "type"})
    stage = builder({k: v for k, v in spec.items() if k not in ("type", "p")})
    return RandomApply(stage, p) if p < 1.0 else stage
