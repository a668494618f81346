"""AdvBN: adversarial perturbation of per-channel feature statistics at one layer (``docs/algorithm.md``).

Reference: Shu, Wu, Goldblum, Goldstein, "Encoding Robustness to Image Style via Adversarial Feature Perturbations",
NeurIPS 2021 (arXiv 2009.08965).

Usage in an existing loop (attach before building the optimizer and before wrapping in DDP or compiling)::

    adv = AdvBN("layer1").attach(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    for images, targets in loader:
        loss = adv.loss(images, targets)            # clean CE + adversarial CE
        # or, keeping your own forward:  out = model(images); loss = ce(out, y) + adv.adversarial_loss(y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
    plain_model = adv.detach()                       # original classes and state_dict keys
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from typing import Any, Literal, overload

import torch
import torch.nn.functional as F
from torch import nn

from advbn_aug.feature.attack import Criterion
from advbn_aug.feature.attacker import AttackOut, LayerAttacker
from advbn_aug.feature.capture import FeatureCapture, capture_owners
from advbn_aug.feature.checks import check_finite, check_targets
from advbn_aug.feature.config import AdvBNConfig, init_docstring, init_signature
from advbn_aug.feature.dual_norm import Route, convert_dual_norm, fold_dual_norm, routed
from advbn_aug.feature.hooks import EvalModeHook, remove_hooks
from advbn_aug.feature.inert import check_attach
from advbn_aug.feature.multi_layer import InnerLayers
from advbn_aug.feature.safety import augmenters_off, check_batch, check_ddp_forward
from advbn_aug.feature.stats import feature_layout, feature_stats, perturb_stats, stats_view
from advbn_aug.losses import prediction_kl
from advbn_aug.split import ModelSplit, resolve_layer, split_model

__all__ = ["AdvBN", "AdvBNConfig", "attach"]


def _is_data_parallel(model: nn.Module) -> bool:
    return isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel))


class AdvBN:
    """Adversarial Batch Normalization as a plugin: hooks on any model, removable with :meth:`detach`.

    After ``attach(model)``, every train-mode forward of ``model`` caches the output ``f`` of ``layer``
    (``(N, C, H, W)`` maps, ``(N, H, W, C)`` with ``layout="nhwc"``, or ``(N, T, C)`` tokens);
    :meth:`adversarial_loss` then finds multipliers ``m, s`` (``(1, C, 1, 1)``: batch-shared, per channel) that
    maximise the loss of ``suffix(clamp((f - mu) * s + mu * m))`` by ``steps`` sign-gradient steps within
    ``[1 - eps, 1 + eps]``, and returns the loss (a scalar) of the downstream layers on those features. Eval-mode
    forwards are untouched.

    Args (the main ones; every field of :class:`AdvBNConfig` is a keyword argument, see ``help(AdvBN.__init__)``):
        layer: module name (``"layer1"``, ``"stages.0"``, ``"blocks.5"``) or timm ``feature_info`` index.
        eps: the multipliers stay in ``[1 - eps, 1 + eps]`` (default 1.1).
        step_size: sign-gradient step on the multipliers (default 0.2).
        steps: PGD steps (default 6; 0: unperturbed features).
        clamp_min: lower clamp of perturbed maps; ``"auto"`` (default) clamps at 0 when the output is post-ReLU.
        dual_bn: adversarial copies of the downstream BatchNorms (default ``True``).
        freeze_prefix: no gradients and eval-mode BatchNorms up to the layer (default ``True``).

    Example::

        adv = AdvBN("layer1", eps=1.1, steps=6).attach(model)
        loss = adv.loss(images, targets)   # images (N, 3, H, W), targets (N,) -> clean CE + adversarial CE
    """

    def __init__(self, layer: str | int = "layer1", **options: Any) -> None:
        unknown = sorted(set(options) - {f.name for f in fields(AdvBNConfig)})
        if unknown:
            raise TypeError(f"unknown AdvBN option(s) {unknown}; valid options: "
                            f"{[f.name for f in fields(AdvBNConfig)]}")
        self.config = AdvBNConfig(layer=layer, **options)
        self.model: nn.Module | None = None
        self.split: ModelSplit | None = None
        self._duals: list[nn.Module] = []
        self._requires_grad: dict[nn.Parameter, bool] = {}
        self._capture = FeatureCapture(self, self.config)  # the cached layer output and the hooks that fill it
        self._attacker = LayerAttacker(self.config)  # the attack and what it keeps between steps

    @classmethod
    def from_config(cls, config: AdvBNConfig | dict) -> AdvBN:
        """An AdvBN from ``config`` (an :class:`AdvBNConfig` or its dict form, e.g. read from YAML)."""
        cfg = config if isinstance(config, AdvBNConfig) else AdvBNConfig.from_dict(config)
        return cls(**cfg.to_dict())

    def __repr__(self) -> str:
        where = f"attached to {type(self.model).__name__} ({self.split.mode} split)" if self.split else "detached"
        c = self.config
        return (f"AdvBN(layer={c.layer!r}, eps={c.eps}, step_size={c.step_size}, steps={c.steps}, "
                f"clamp={self.clamp!r}, {where})")

    # ---------------------------------------------------------------- attach / detach
    @property
    def attached(self) -> bool:
        """Whether this AdvBN is hooked into a model."""
        return self.model is not None

    def attach(self, model: nn.Module, *, example_inputs: Any = None, example_kwargs: dict | None = None) -> AdvBN:
        """Hook into ``model`` (in place) and return ``self``. Build the optimizer afterwards: the adversarial
        BatchNorm copies are new parameters.

        ``example_inputs`` (a tensor or a tuple of forward arguments) matters only for models that ``torch.fx`` cannot
        trace: one no-grad eval forward records the order in which modules run, so the frozen prefix is exact from
        the start (otherwise it is inferred from registration order and checked on the first training forward).
        """
        if self.model is not None:
            raise RuntimeError(f"this AdvBN is already attached to a {type(self.model).__name__}; "
                               "call detach() first or create another AdvBN")
        if _is_data_parallel(model):
            raise TypeError("attach AdvBN to the plain model before wrapping it in DistributedDataParallel/"
                            "DataParallel: AdvBN(...).attach(model); model = DDP(model, ...)")
        for other in capture_owners(model):
            raise RuntimeError(f"the model already has an AdvBN attached at layer {other.config.layer!r}; detach it "
                               "first (adv.detach())")
        if isinstance(example_inputs, torch.Tensor):
            example_inputs = (example_inputs,)
        extras = [resolve_layer(model, x) for x in self.config.extra_layers]
        split = split_model(model, self.config.layer, self.config.split, example_inputs=example_inputs,
                            example_kwargs=example_kwargs, leaves=extras)
        after = {id(m) for m in split.suffix_modules}
        before = [x for x in extras if id(model.get_submodule(x)) not in after]
        if before:
            split.close()
            raise ValueError(f"extra layer(s) {before} do not run after layer {split.layer!r}: extra_layers must come "
                             "later in the model than the attacked layer")
        wants_graph = [k for k in ("compile_attack", "fold_bn") if getattr(self.config, k)]
        wants_graph += ["adv_fraction"] if self.config.adv_fraction < 1 else []
        if wants_graph and split.mode != "fx":
            split.close()
            raise ValueError(f"{wants_graph[0]}={getattr(self.config, wants_graph[0])} needs the torch.fx split, but "
                             f"{type(model).__name__} at {self.config.layer!r} takes the hook split ({split.reason}); "
                             f"drop {wants_graph[0]}")
        inert_norms = check_attach(split, self.config)  # closes the split and raises if AdvBN does nothing
        self.model, self.split = model, split
        if self.config.freeze_prefix:
            for p in split.prefix_params:
                self._requires_grad[p] = p.requires_grad
                p.requires_grad_(False)
            for m in split.prefix_modules:
                m.register_forward_pre_hook(EvalModeHook(self))
        if self.config.dual_bn or self.config.dual_ln:
            self._duals = convert_dual_norm(split.suffix_modules, batch_norm=self.config.dual_bn,
                                            layer_norm=self.config.dual_ln)
            split.refresh()  # the in-place class swap is ours, not a change of the model
        self._capture.attach(split)
        inner = InnerLayers(self, extras, [model.get_submodule(x) for x in extras], self.config.clamp_min,
                            self.config.layout == "nhwc") if extras else None
        self._attacker.attach(split, inner, inert_norms)
        return self

    def detach(self, keep: Route = "clean") -> nn.Module:
        """Remove every hook, fold the dual norms back, unfreeze the prefix; return the model with its original
        module classes and ``state_dict`` keys.

        ``keep="clean"`` (default) keeps the clean BatchNorms; ``keep="adv"`` makes the adversarial (auxiliary) copies
        the model's BatchNorms, e.g. to export a model for style-shifted data as the paper evaluates it.
        """
        if keep not in ("clean", "adv"):
            raise ValueError(f"keep must be 'clean' or 'adv', got {keep!r}")
        if self.model is None or self.split is None:
            raise RuntimeError("this AdvBN is not attached: call attach(model) first")
        model = self.model
        remove_hooks(model, self)  # by owner, not by handle: deep copies of the model hold copied hooks
        self._attacker.detach()
        self.split.close()
        fold_dual_norm(self._duals, keep=keep)
        for p, flag in self._requires_grad.items():
            p.requires_grad_(flag)
        for m in self.split.prefix_modules:
            m.training = model.training
        self.model, self.split, self._duals, self._requires_grad = None, None, [], {}
        self._capture.detach()
        return model

    @property
    def dual_norms(self) -> tuple[nn.Module, ...]:
        """The norm layers after the attacked one that have an adversarial copy (``aux_bn``), converted in place by
        :meth:`attach` (``dual_bn`` / ``dual_ln``); empty when detached or when both are off."""
        return tuple(self._duals)

    def route(self, route: Route) -> AbstractContextManager[None]:
        """``with adv.route("adv"): logits = model(x)`` evaluates through the adversarial (auxiliary) BatchNorms,
        as the paper does for style-shifted test sets; ``"clean"`` is the default route."""
        if self.model is None:
            raise RuntimeError("this AdvBN is not attached: call attach(model) first")
        return routed(self._duals, route)

    # ---------------------------------------------------------------- the cached feature
    @property
    def cached_feature(self) -> torch.Tensor | None:
        """The layer output cached by the last train-mode forward, detached: ``(N, C, H, W)`` maps (``(N, H, W, C)``
        with ``layout="nhwc"``) or ``(N, T, C)`` tokens; ``None`` when no feature is waiting for
        :meth:`adversarial_loss` (before a training forward, after it was used or dropped, in eval mode)."""
        return self._capture.feature

    def discard(self) -> None:
        """Drop the feature cached by the last train-mode forward without attacking it (e.g. during a warm-up)."""
        self._capture.discard()

    # ---------------------------------------------------------------- the attack
    @property
    def last_multipliers(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(m, s)`` of the last attack, each of shape ``(1, C, 1, 1)`` (also for token features; ``(N, C, 1, 1)``
        with ``stats="instance"``); ``None`` before the first attack."""
        return self._attacker.multipliers

    @property
    def multipliers_by_layer(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The last attack's ``(m, s)`` per layer: ``layer`` first, then each of ``extra_layers``; empty before."""
        return self._attacker.multipliers_by_layer

    @property
    def clamp(self) -> float | None | str:
        """The clamp applied to the layer's features: a number, ``None`` (no clamp), or ``"auto"`` while undecided.

        Before the first training batch this is ``clamp_min`` (the feature's rank is unknown); afterwards it is the
        setting for the rank seen, ``clamp_min`` for ``(N, C, H, W)`` maps and ``token_clamp_min`` for ``(N, T, C)``
        tokens, with ``"auto"`` replaced by the decision taken on the first attacked batch."""
        return self._attacker.clamp(self._capture.feature_dim)

    def _check_finite(self, f: torch.Tensor, f_adv: torch.Tensor | None, nonfinite_grads: torch.Tensor) -> None:
        if self.config.check_finite:
            check_finite(self.split.layer, f, f_adv, nonfinite_grads)  # type: ignore[union-attr]

    def _suffix(self, feature: torch.Tensor, train: bool) -> torch.Tensor:
        assert self.split is not None
        out = self.split.run_suffix(feature, train=train, inputs=self._capture.inputs)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the model returned {type(out).__name__}; AdvBN needs a logits tensor (N, K) "
                            "(set aux_logits=False or wrap the model so forward returns one tensor)")
        return out

    @contextmanager
    def _own_pass(self) -> Iterator[None]:
        """AdvBN's own passes through the model: adversarial norms on, its hooks and the feature augmenters inert."""
        assert self.split is not None
        with self._capture.paused(), routed(self._duals, "adv"), augmenters_off(self.split.model):
            yield

    def _attack(self, f: torch.Tensor, targets: torch.Tensor | None, criterion: Criterion | None, *,
                reuse: bool = False) -> AttackOut:
        """The attack on ``f`` through the downstream layers in eval mode (see :meth:`LayerAttacker.run`)."""
        return self._attacker.run(f, targets, criterion, eager=lambda x: self._suffix(x, train=False),
                                  own_pass=self._own_pass(), reuse=reuse)

    def attack(self, feature: torch.Tensor, targets: torch.Tensor | None, criterion: Criterion | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """PGD on the statistics multipliers for ``feature`` (the layer output, ``(N, C, H, W)`` or ``(N, T, C)``).

        Returns ``(m, s)`` with the multiplier shape of the feature (``(1, C, 1, 1)`` or ``(1, 1, C)``). The
        downstream layers run in eval mode through the adversarial norms; no parameter gradient is accumulated.
        """
        if self.split is None:
            raise RuntimeError("attach(model) before attacking")
        feature_layout(feature, name=f"the output of layer {self.split.layer!r}")
        check_batch("the feature", feature)
        self.split.verify()
        check_targets(feature, targets, self.config.attack_loss)
        out = self._attack(feature.detach(), targets, criterion)
        self._check_finite(feature, None, out.nonfinite)
        return out.m, out.s

    def perturb(self, feature: torch.Tensor, m: torch.Tensor, s: torch.Tensor, *, mean: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Apply multipliers ``m, s`` to ``feature`` with this AdvBN's clamp.

        ``feature``: the layer output (``(N, C, H, W)``, ``(N, H, W, C)`` with ``layout="nhwc"``, or ``(N, T, C)``);
        ``m, s``: the multipliers (e.g. from :meth:`attack`); ``mean``: the feature's per-channel mean when already
        known. Returns the perturbed feature, ``feature``'s shape and dtype."""
        view = stats_view(feature.detach(), self.config.layout == "nhwc")
        mean = feature_stats(view, self.config.stats == "instance").mean if mean is None else mean
        out = perturb_stats(view, mean, m.reshape(mean.shape), s.reshape(mean.shape), self._attacker.clamp_for(feature))
        return out.reshape(feature.shape).to(feature.dtype)

    # ---------------------------------------------------------------- losses
    @overload
    def adversarial_loss(self, targets: torch.Tensor | None, criterion: Criterion | None = ...,
                         return_logits: Literal[False] = ...) -> torch.Tensor: ...

    @overload
    def adversarial_loss(self, targets: torch.Tensor | None, criterion: Criterion | None = ..., *,
                         return_logits: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def adversarial_loss(self, targets: torch.Tensor | None, criterion: Criterion | None = None,
                         return_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The adversarial term for the features cached by the last train-mode forward of the model.

        Attacks the cached feature, then runs the downstream layers in train mode through the adversarial norms
        and returns ``criterion(logits_adv, targets)`` (cross-entropy by default); with ``return_logits=True``,
        ``(loss, logits_adv)`` (for adversarial accuracy). The cache is consumed.

        Refused in eval mode (nothing changes, the cache is kept). A step that raises (non-finite feature with
        ``check_finite``, targets of the wrong shape, ...) is rolled back: the running statistics that the clean
        forward updated are restored (``check_finite`` on) and the cache is dropped.

        Label-free (``attack_loss="kl"``): ``targets=None`` returns the KL from the prediction on the unperturbed
        feature to the one on the adversarial feature (any ``(N, K, *)`` logits, e.g. per-pixel); with targets,
        the attack is label-free and the term is ``criterion(logits_adv, targets)``.
        """
        if self.model is None or self.split is None:
            raise RuntimeError("this AdvBN is not attached: call attach(model) first")
        if not self.model.training:
            raise RuntimeError("adversarial_loss is a training loss but the model is in eval mode (its downstream "
                               "BatchNorms would train on adversarial features): call model.train() first; the cached "
                               "feature is kept")
        try:
            f = self._capture.take()
            self.split.verify()
            check_targets(f, targets, self.config.attack_loss)
            if self.config.adv_fraction < 1:
                k = max(1, math.ceil(self.config.adv_fraction * f.shape[0]))
                f, targets = f[:k], (targets[:k] if targets is not None else None)
            criterion = criterion or F.cross_entropy
            out = self._attack(f, targets, criterion, reuse=self._attacker.count_step())
            x = self.perturb(f, out.m, out.s, mean=out.mean)
            self._check_finite(f, x, out.nonfinite)
            with self._own_pass(), self._attacker.inner_pass():
                logits = self._suffix(x, train=True)
            if targets is None:  # label-free: consistency with the prediction on the unperturbed feature
                assert out.reference is not None
                loss = prediction_kl(logits, out.reference)
            else:
                loss = criterion(logits, targets)
            return (loss, logits) if return_logits else loss
        except Exception:
            self._capture.rollback()
            raise
        finally:
            self._capture.discard()

    def loss(self, images: torch.Tensor, targets: torch.Tensor, criterion: Criterion | None = None, *,
             model: nn.Module | None = None) -> torch.Tensor:
        """The paper's training loss ``criterion(model(images), y) + criterion(suffix_adv(f_adv), y)``.

        ``model`` is the module to run the clean forward through (default: the attached model); pass the DDP
        wrapper here so the clean forward synchronises gradients (required when ``torch.distributed`` runs several
        processes). ``images`` ``(N, ...)`` and ``targets`` (``(N,)`` or ``(N, K)``) are checked before the forward.
        """
        if self.model is None:
            raise RuntimeError("this AdvBN is not attached: call attach(model) first")
        net = model if model is not None else self.model
        if not net.training:
            raise RuntimeError("AdvBN.loss is a training loss: call model.train() first (eval forwards are inert)")
        check_ddp_forward(net)
        if isinstance(images, torch.Tensor):
            check_batch("the images", images)
            check_targets(images, targets, self.config.attack_loss)
        criterion = criterion or F.cross_entropy
        out = net(images)
        try:
            clean = criterion(out, targets)
        except Exception:
            self._capture.rollback()
            raise
        return clean + self.adversarial_loss(targets, criterion)


AdvBN.__init__.__signature__ = init_signature()  # type: ignore[attr-defined]
AdvBN.__init__.__doc__ = init_docstring()


def attach(model: nn.Module, layer: str | int = "layer1", **kwargs: Any) -> AdvBN:
    """Shorthand for ``AdvBN(layer, **kwargs).attach(model)``."""
    return AdvBN(layer, **kwargs).attach(model)
