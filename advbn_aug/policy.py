"""``Policy``: image-space stages + AugMix views + feature-space augmenters (AdvBN) as one training loss.

One step: the image stages run on the clean batch (each with its own probability and schedule); AugMix then makes
``num_views`` augmented views; the model runs once on ``[clean; view_1; ...]``; the loss is

    clean_weight * CE(clean logits, y) + jsd_weight * JSD(clean, views) + adv_weight * sum(feature loss terms)

where each feature augmenter (AdvBN) contributes its term for the features cached by that same forward (on all
views, with targets repeated). Feature augmenters follow the small :class:`FeatureAugmenter` protocol, so in-forward
augmenters such as MixStyle or DSU (which add no loss term) fit the same slot.

Example, a plain loop (attach before building the optimizer)::

    from advbn_aug.policy import Policy, PolicyConfig

    cfg = PolicyConfig(
        augmix={"severity": 3, "width": 3}, num_views=2,            # AugMix + JSD (weight 12)
        features=[{"type": "advbn", "layer": "layer1", "start_epoch": 1}],  # AdvBN after one warm-up epoch
        mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],     # normalisation applied after augmentation
    )
    policy = Policy(cfg).to(device)
    model = policy.attach(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    for epoch in range(epochs):
        model.train()
        for step, (images, targets) in enumerate(loader):   # images: float (N, 3, H, W) in [0, 1] or uint8
            loss, info = policy.step(model, images.to(device), targets.to(device), epoch=epoch, step=step)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
    model = policy.detach()                                  # plain model, original state_dict keys

``cfg.to_yaml("policy.yaml")`` / ``PolicyConfig.from_yaml("policy.yaml")`` round-trip the configuration.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from advbn_aug.config import DictConfig
from advbn_aug.feature.advbn import AdvBN
from advbn_aug.feature.dsu import DSU
from advbn_aug.feature.dual_norm import Route, routed
from advbn_aug.feature.mixstyle import MixStyle
from advbn_aug.image.augmix import AugMixBatch, AugMixConfig
from advbn_aug.image.stages import as_stage, build_stage
from advbn_aug.losses import AUGMIX_JSD_WEIGHT, jsd_consistency

__all__ = ["Policy", "PolicyConfig", "Schedule", "FeatureAugmenter", "AdvBNFeature", "register_feature",
           "FEATURE_TYPES"]

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_SCHEDULE_KEYS = ("start_epoch", "end_epoch", "every")


@dataclass(frozen=True)
class Schedule:
    """When a stage or feature augmenter is on: epochs ``[start_epoch, end_epoch)`` and every ``every``-th step."""

    start_epoch: int = 0
    end_epoch: int | None = None
    every: int = 1

    def __post_init__(self) -> None:
        if self.start_epoch < 0 or self.every < 1 or (self.end_epoch is not None and self.end_epoch < self.start_epoch):
            raise ValueError(f"invalid schedule {self}: need start_epoch >= 0, every >= 1, end_epoch >= start_epoch")

    @classmethod
    def pop_from(cls, spec: dict[str, Any]) -> Schedule:
        """Take the schedule keys out of a spec dict (mutates it)."""
        return cls(**{k: spec.pop(k) for k in _SCHEDULE_KEYS if k in spec})

    def active(self, epoch: int, step: int) -> bool:
        return epoch >= self.start_epoch and (self.end_epoch is None or epoch < self.end_epoch) \
            and step % self.every == 0


# ---------------------------------------------------------------------------------------- feature augmenters
@runtime_checkable
class FeatureAugmenter(Protocol):
    """A feature-space augmenter living in the model through hooks.

    ``attach(model)`` hooks in (before the optimizer is built), ``detach()`` returns the plain model,
    ``set_active(flag)`` switches it per step (schedules), and ``loss_term(targets, criterion)`` returns its extra
    loss for the features of the model's last train-mode forward, or ``None`` if it adds none (MixStyle/DSU-like
    augmenters perturb inside the forward instead).
    """

    def attach(self, model: nn.Module) -> Any: ...

    def detach(self) -> nn.Module: ...

    def set_active(self, active: bool) -> None: ...

    def loss_term(self, targets: torch.Tensor, criterion: Criterion | None = None) -> torch.Tensor | None: ...


class AdvBNFeature:
    """:class:`~advbn_aug.feature.advbn.AdvBN` as a :class:`FeatureAugmenter`: its term is ``adversarial_loss``."""

    def __init__(self, advbn: AdvBN):
        self.advbn = advbn
        self.active = True

    def __repr__(self) -> str:
        return f"AdvBNFeature({self.advbn!r})"

    def attach(self, model: nn.Module) -> AdvBNFeature:
        self.advbn.attach(model)
        return self

    def detach(self, keep: Route = "clean") -> nn.Module:
        return self.advbn.detach(keep=keep)

    def set_active(self, active: bool) -> None:
        self.active = bool(active)

    def loss_term(self, targets: torch.Tensor, criterion: Criterion | None = None) -> torch.Tensor | None:
        return self.advbn.adversarial_loss(targets, criterion) if self.active else None


def _build_advbn(spec: dict[str, Any]) -> AdvBNFeature:
    return AdvBNFeature(AdvBN.from_config(spec))


FEATURE_TYPES: dict[str, Callable[[dict[str, Any]], FeatureAugmenter]] = {
    "advbn": _build_advbn, "mixstyle": MixStyle.from_config, "dsu": DSU.from_config}


def register_feature(type_name: str, builder: Callable[[dict[str, Any]], FeatureAugmenter]) -> None:
    """Make ``{"type": type_name, ...}`` feature specs buildable (``builder`` gets the spec without type/schedule)."""
    FEATURE_TYPES[type_name] = builder


def _as_feature(obj: Any) -> FeatureAugmenter:
    if isinstance(obj, dict):
        spec = dict(obj)
        kind = spec.pop("type", None)
        if kind not in FEATURE_TYPES:
            raise ValueError(f"unknown feature augmenter type {kind!r}; known types: {sorted(FEATURE_TYPES)} "
                             "(register new ones with advbn_aug.policy.register_feature)")
        return FEATURE_TYPES[kind](spec)
    if isinstance(obj, AdvBN):
        return AdvBNFeature(obj)
    if isinstance(obj, FeatureAugmenter):
        return obj
    raise TypeError(f"unknown feature augmenter type {type(obj).__name__}: pass an AdvBN, an object with "
                    "attach/detach/set_active/loss_term (FeatureAugmenter), or a spec dict {'type': 'advbn', ...}")


# ---------------------------------------------------------------------------------------- config
@dataclass
class PolicyConfig(DictConfig):
    """A serialisable policy.

    Args:
        stages: image-stage specs applied in order to the clean batch, e.g. ``{"type": "kornia", "name":
            "RandomHorizontalFlip", "p": 1.0}`` (op arguments under ``"kwargs"``); keys ``p`` (the probability that
            the stage is applied to an image, default 1, whatever the op's own default) and ``start_epoch``/
            ``end_epoch``/``every`` (schedule) apply to every type. Types: kornia, albumentations, augmix, deepaugment
            (+ registered); see :func:`~advbn_aug.image.build_stage`.
        augmix: :class:`~advbn_aug.image.AugMixConfig` settings for the JSD views; ``None``: no views, no JSD.
        num_views: augmented views per image (the paper: 2).
        features: feature-augmenter specs, e.g. ``{"type": "advbn", "layer": "layer1", "start_epoch": 2}``
            (AdvBN keys as in ``AdvBNConfig``, plus the schedule keys); also ``{"type": "mixstyle", ...}``
            (``MixStyleConfig`` keys) and ``{"type": "dsu", ...}`` (``DSUConfig`` keys), which add no loss term.
        clean_weight, jsd_weight, adv_weight: loss weights (the paper's JSD weight is 12).
        mean, std: normalisation applied to the augmented batch right before the model; ``None``: none.
    """

    stages: list[dict[str, Any]] = field(default_factory=list)
    augmix: dict[str, Any] | None = None
    num_views: int = 2
    features: list[dict[str, Any]] = field(default_factory=list)
    clean_weight: float = 1.0
    jsd_weight: float = AUGMIX_JSD_WEIGHT
    adv_weight: float = 1.0
    mean: list[float] | None = None
    std: list[float] | None = None

    def __post_init__(self) -> None:
        for name in ("clean_weight", "jsd_weight", "adv_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not isinstance(self.num_views, int) or self.num_views < 1:
            raise ValueError(f"num_views must be an integer >= 1, got {self.num_views!r}")
        if self.augmix is not None:
            AugMixConfig.from_dict(dict(self.augmix))  # validates names and ranges early
        for kind, specs in (("stage", self.stages), ("feature", self.features)):
            for s in specs:
                if not isinstance(s, dict) or "type" not in s:
                    raise ValueError(f"each {kind} spec must be a dict with a 'type' key, got {s!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std (or neither)")
        if self.mean is not None:
            self.mean, self.std = [float(v) for v in self.mean], [float(v) for v in self.std]  # type: ignore[union-attr]
            if len(self.mean) != len(self.std) or any(v <= 0 for v in self.std):
                raise ValueError(f"mean/std must have equal lengths and std > 0, got {self.mean}, {self.std}")

    @classmethod
    def augmix_advbn(cls, layer: str | int = "layer1", *, warmup_epochs: int = 0, **kwargs: Any) -> PolicyConfig:
        """AugMix (paper settings, 2 views, JSD 12) + AdvBN at ``layer`` after ``warmup_epochs``."""
        return cls(augmix=AugMixConfig().to_dict(), features=[{"type": "advbn", "layer": layer,
                                                               "start_epoch": warmup_epochs}], **kwargs)


# ---------------------------------------------------------------------------------------- the policy
class Policy:
    """Runs a :class:`PolicyConfig` (plus optional in-code stages/features) as a one-call training step.

    Args:
        config: the serialisable part.
        stages: extra image stages (kornia modules, albumentations transforms, ...) appended after the config's.
        features: extra feature augmenters (``AdvBN`` instances, ...) appended after the config's.
    """

    def __init__(self, config: PolicyConfig | dict[str, Any] | None = None, *, stages: Sequence[Any] = (),
                 features: Sequence[Any] = ()):
        self.config = config if isinstance(config, PolicyConfig) else PolicyConfig.from_dict(config or {})
        c = self.config
        self.stages: list[tuple[Callable[[torch.Tensor], torch.Tensor], Schedule]] = []
        for spec in c.stages:
            spec = dict(spec)
            sched = Schedule.pop_from(spec)
            self.stages.append((build_stage(spec), sched))
        self.stages += [(as_stage(s), Schedule()) for s in stages]
        self.augmix = AugMixBatch(AugMixConfig.from_dict(dict(c.augmix))) if c.augmix is not None else None
        self.features: list[tuple[FeatureAugmenter, Schedule]] = []
        for spec in c.features:
            spec = dict(spec)
            sched = Schedule.pop_from(spec)
            self.features.append((_as_feature(spec), sched))
        self.features += [(_as_feature(f), Schedule()) for f in features]
        self.model: nn.Module | None = None

    def __repr__(self) -> str:
        lines = [f"  stage {s!r} {sch}" for s, sch in self.stages]
        if self.augmix is not None:
            lines.append(f"  views {self.config.num_views} x {self.augmix!r}")
        lines += [f"  feature {f!r} {sch}" for f, sch in self.features]
        c = self.config
        lines.append(f"  weights clean={c.clean_weight} jsd={c.jsd_weight} adv={c.adv_weight}")
        return "Policy(\n" + "\n".join(lines) + "\n)"

    def to(self, device: torch.device | str) -> Policy:
        """Move the stages that hold tensors (e.g. DeepAugment networks) to ``device``."""
        for s, _ in self.stages:
            if isinstance(s, nn.Module):
                s.to(device)
            elif isinstance(getattr(s, "stage", None), nn.Module):
                s.stage.to(device)  # type: ignore[attr-defined]
        return self

    # ------------------------------------------------------------ model
    def attach(self, model: nn.Module) -> nn.Module:
        """Attach the feature augmenters to ``model`` (in place); build the optimizer afterwards.

        Atomic: if one augmenter fails to attach, those attached before it are detached again (in reverse order) and
        the error is raised with ``model`` exactly as before."""
        if self.model is not None:
            raise RuntimeError("this Policy is already attached; call policy.detach() first")
        done: list[FeatureAugmenter] = []
        try:
            for f, _ in self.features:
                f.attach(model)
                done.append(f)
        except BaseException as err:
            for f in reversed(done):
                try:
                    f.detach()
                except Exception as undo:  # keep the original error; say what could not be undone
                    err.add_note(f"while undoing the attach, detaching {f!r} failed too: {undo!r}")
            raise
        self.model = model
        return model

    def detach(self, keep: Route = "clean") -> nn.Module:
        """Remove the feature augmenters; returns the plain model. ``keep="adv"`` keeps the adversarial BatchNorm
        copies in the clean ones' places (see :meth:`AdvBN.detach`)."""
        if keep not in ("clean", "adv"):
            raise ValueError(f"keep must be 'clean' or 'adv', got {keep!r}")
        if self.model is None:
            raise RuntimeError("this Policy is not attached: call policy.attach(model) first")
        model = self.model
        for f, _ in reversed(self.features):
            takes_keep = "keep" in inspect.signature(f.detach).parameters  # augmenters without dual norms don't
            model = f.detach(keep=keep) if takes_keep else f.detach()
        self.model = None
        return model

    def route(self, route: Route) -> AbstractContextManager[None]:
        """``with policy.route("adv"): logits = model(x)``: evaluate through every adversarial norm copy."""
        if self.model is None:
            raise RuntimeError("this Policy is not attached: call policy.attach(model) first")
        return routed(self.model, route)

    # ------------------------------------------------------------ batches
    @staticmethod
    def _as_float(images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            hint = " (channels-last? use images.permute(0, 3, 1, 2))" if images.dim() == 4 else ""
            raise ValueError(f"images must be (N, C, H, W) with C in {{1, 3}}, got {tuple(images.shape)}{hint}")
        if images.dtype == torch.uint8:
            return images.float() / 255.0
        if not images.is_floating_point():
            raise TypeError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
        return images

    def augment(self, images: torch.Tensor, *, epoch: int = 0, step: int = 0) -> torch.Tensor:
        """The image side of a step: stages, then ``[clean; views]`` (``(1 + num_views) N`` rows if AugMix is on),
        normalised. Float ``(N, C, H, W)`` in ``[0, 1]`` (or uint8) in."""
        x = self._as_float(images)
        for stage, sched in self.stages:
            if sched.active(epoch, step):
                x = stage(x)
        if self.augmix is not None:
            x = self.augmix.views(x, self.config.num_views)
        if self.config.mean is not None:
            mean = torch.tensor(self.config.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.config.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    # ------------------------------------------------------------ the step
    def step(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, epoch: int = 0, step: int = 0,
             criterion: Criterion | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Augment, forward once, and return ``(loss, info)``; call ``loss.backward()`` yourself.

        ``info`` holds detached scalar tensors ``loss``, ``loss_clean``, ``loss_jsd`` / ``loss_adv`` (when used) and
        ``features_active`` (list of bools); no host sync is forced.
        """
        if self.features and self.model is None:
            raise RuntimeError("call policy.attach(model) before training (and before building the optimizer): "
                               "the feature augmenters hook into the model")
        if not model.training:
            raise RuntimeError("Policy.step is a training step: call model.train() first")
        c = self.config
        criterion = criterion or F.cross_entropy
        n = images.shape[0]
        if n == 0:
            raise ValueError("Policy.step got an empty batch (0 images): skip empty batches before the step (e.g. "
                             "the last batch of a filtered loader, or use drop_last=True)")
        if not isinstance(targets, torch.Tensor) or targets.shape[0] != n:
            raise ValueError(f"targets must be a tensor with one row per image ({n}), got "
                             f"{getattr(targets, 'shape', type(targets).__name__)}")
        flags = [sched.active(epoch, step) for _, sched in self.features]
        for (feat, _), on in zip(self.features, flags):
            feat.set_active(on)  # before the forward: in-forward augmenters (MixStyle, DSU) follow their schedule
        batch = self.augment(images, epoch=epoch, step=step)
        splits = batch.shape[0] // n
        logits = model(batch)
        ce = criterion(logits[:n], targets)
        loss = c.clean_weight * ce
        info: dict[str, Any] = {"loss_clean": ce.detach()}
        if splits > 1:
            jsd = jsd_consistency(logits, num_splits=splits)
            loss = loss + c.jsd_weight * jsd
            info["loss_jsd"] = jsd.detach()
        all_targets = targets.repeat(splits, *([1] * (targets.dim() - 1)))
        adv_terms = []
        for (feat, _), on in zip(self.features, flags):
            term = feat.loss_term(all_targets, criterion) if on else None
            if term is not None:
                adv_terms.append(term)
        if adv_terms:
            adv = torch.stack(adv_terms).sum()
            loss = loss + c.adv_weight * adv
            info["loss_adv"] = adv.detach()
        info["features_active"] = flags
        info["loss"] = loss.detach()
        return loss, info

    loss = step  # alias: ``loss, info = policy.loss(model, images, targets)``
