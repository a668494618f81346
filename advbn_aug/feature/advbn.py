"""AdvBN: adversarial perturbation of per-channel feature statistics at one layer (``../shared/ALGORITHM.md``).

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

import logging
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import fields
from typing import Any, Literal, NamedTuple, overload

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from advbn_aug.feature.attack import Criterion, run_attack
from advbn_aug.feature.bn_fold import fold_conv_bn
from advbn_aug.feature.checks import check_finite, check_layout, check_targets
from advbn_aug.feature.config import AdvBNConfig, init_docstring, init_signature
from advbn_aug.feature.dual_norm import Route, convert_dual_norm, fold_dual_norm, routed
from advbn_aug.feature.inert import check_attach, check_first_attack
from advbn_aug.feature.multi_layer import InnerHook, InnerLayers
from advbn_aug.feature.safety import NormSnapshot, augmenters_off, check_batch, check_ddp_forward
from advbn_aug.feature.stats import feature_layout, feature_stats, perturb_stats
from advbn_aug.losses import prediction_kl
from advbn_aug.split import FxSplit, ModelSplit, resolve_layer, split_model

__all__ = ["AdvBN", "AdvBNConfig", "attach"]

_log = logging.getLogger("advbn_aug")


def _is_data_parallel(model: nn.Module) -> bool:
    return isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel))


class _CaptureHook:
    """Forward hook on the attacked layer: caches its output in train mode; inert otherwise."""

    def __init__(self, owner: AdvBN):
        self.owner = owner

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        return self.owner._capture(output)


class _RootPreHook:
    """Forward pre-hook on the model: drops the last feature (any forward); in train mode starts a step (caches inputs
    for the hook split, snapshots the norm statistics)."""

    def __init__(self, owner: AdvBN):
        self.owner = owner

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.owner._before_forward(args, kwargs)


class _FrozenPrefixHook:
    """Forward pre-hook on each frozen-prefix module: eval mode whichever method of the model runs it."""

    def __init__(self, owner: AdvBN):
        self.owner = owner

    def __call__(self, module: nn.Module, args: Any) -> None:
        if module.training:
            module.training = False


_HOOK_TYPES = (_CaptureHook, _RootPreHook, _FrozenPrefixHook, InnerHook)


class _AttackOut(NamedTuple):
    m: torch.Tensor
    s: torch.Tensor
    nonfinite: torch.Tensor
    mean: torch.Tensor
    reference: torch.Tensor | None  # the prediction on the unperturbed feature (attack_loss="kl")


class AdvBN:
    """Adversarial Batch Normalization as a plugin: hooks on any model, removable with :meth:`detach`.

    After ``attach(model)``, every train-mode forward of ``model`` caches the output ``f`` of ``layer``;
    :meth:`adversarial_loss` then finds multipliers ``m, s`` (batch-shared, per channel) that maximise the loss of
    ``suffix(clamp((f - mu) * s + mu * m))`` by ``steps`` sign-gradient steps within ``[1 - eps, 1 + eps]``, and
    returns the loss of the downstream layers on those features. Eval-mode forwards are untouched.

    The keyword arguments are the fields of :class:`AdvBNConfig` (``AdvBN("layer1", eps=1.1, steps=6, ...)``).
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
        self._handles: list[Any] = []
        self._feature: torch.Tensor | None = None
        self._feature_version: int | None = None
        self._feature_dim: int | None = None  # rank of the layer output seen in training (4 maps, 3 tokens)
        self._norms: list[nn.Module] = []  # the norm layers whose running statistics a training forward updates
        self._snapshot: NormSnapshot | None = None  # their statistics before the current step's clean forward
        self._inputs: tuple[tuple, dict] | None = None
        self._busy = False
        self._multipliers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._inner: InnerLayers | None = None
        self._extra_multipliers: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
        self._steps_seen = 0  # adversarial_loss calls since attach (the attack_every schedule)
        self._attack_fn: Any = None
        self._auto_clamp: dict[int, float | None] = {}
        self._layout_checked = False
        self._inert_norms: tuple[str, ...] = ()  # BatchNorms that undo the perturbation unless a clamp applies

    @classmethod
    def from_config(cls, config: AdvBNConfig | dict) -> AdvBN:
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
        for m in model.modules():
            for hook in m._forward_hooks.values():
                if isinstance(hook, _CaptureHook):
                    raise RuntimeError(f"the model already has an AdvBN attached at layer "
                                       f"{hook.owner.config.layer!r}; detach it first (adv.detach())")
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
        self._inert_norms = check_attach(split, self.config)  # closes the split and raises if AdvBN does nothing
        self.model, self.split = model, split
        if self.config.freeze_prefix:
            for p in split.prefix_params:
                self._requires_grad[p] = p.requires_grad
                p.requires_grad_(False)
            self._handles += [m.register_forward_pre_hook(_FrozenPrefixHook(self)) for m in split.prefix_modules]
        if self.config.dual_bn or self.config.dual_ln:
            self._duals = convert_dual_norm(split.suffix_modules, batch_norm=self.config.dual_bn,
                                            layer_norm=self.config.dual_ln)
            split.refresh()  # the in-place class swap is ours, not a change of the model
        self._handles.append(split.layer_module.register_forward_hook(_CaptureHook(self)))
        self._inner = InnerLayers(self, extras, [model.get_submodule(x) for x in extras], self.config.clamp_min,
                                  self.config.layout == "nhwc") if extras else None
        self._handles.append(model.register_forward_pre_hook(_RootPreHook(self), with_kwargs=True))
        self._norms = NormSnapshot.modules_of(model, split.prefix_modules if self.config.freeze_prefix else ())
        self._auto_clamp, self._layout_checked, self._feature_dim = {}, False, None
        self._multipliers, self._steps_seen, self._attack_fn = None, 0, None
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
        for m in model.modules():  # by type, not by handle: deep copies of the model hold copied hooks
            for hooks in (m._forward_hooks, m._forward_pre_hooks):
                for key in [k for k, h in hooks.items() if isinstance(h, _HOOK_TYPES) and h.owner is self]:
                    del hooks[key]
                    m._forward_pre_hooks_with_kwargs.pop(key, None)
        self._handles = []
        if self._inner is not None:
            self._inner.remove()
            self._inner = None
        self.split.close()
        fold_dual_norm(self._duals, keep=keep)
        for p, flag in self._requires_grad.items():
            p.requires_grad_(flag)
        for m in self.split.prefix_modules:
            m.training = model.training
        self.model, self.split, self._duals, self._requires_grad = None, None, [], {}
        self._attack_fn, self._norms = None, []
        self.discard()
        return model

    def route(self, route: Route) -> AbstractContextManager[None]:
        """``with adv.route("adv"): logits = model(x)`` evaluates through the adversarial (auxiliary) BatchNorms,
        as the paper does for style-shifted test sets; ``"clean"`` is the default route."""
        if self.model is None:
            raise RuntimeError("this AdvBN is not attached: call attach(model) first")
        return routed(self._duals, route)

    # ---------------------------------------------------------------- hooks
    def _active(self) -> bool:
        return self.model is not None and self.model.training and not self._busy and not is_fx_symbolic_tracing()

    def _before_forward(self, args: tuple, kwargs: dict) -> None:
        """Any forward of the model (train or eval, not AdvBN's own passes) makes the cached feature stale; a training
        forward starts a step. With ``check_finite``, the step first copies the running statistics of the norm layers
        it will update (a few small buffers, no host sync): a refused step restores them, so a NaN or empty batch
        leaves the model as it was. The clean forward itself is untouched."""
        if self.model is None or self._busy or is_fx_symbolic_tracing():
            return
        self.discard()
        if not self._active():
            return
        assert self.split is not None
        self._inputs = (args, kwargs) if self.split.mode == "hook" else None
        if self.config.check_finite:
            self._snapshot = NormSnapshot(self._norms)

    def _rollback(self) -> None:
        """Refuse the current step: the norm statistics back to their snapshot, the cached feature dropped."""
        if self._snapshot is not None:
            self._snapshot.restore()
        self.discard()

    def _capture(self, output: Any) -> Any:
        """Cache the layer output; with a frozen prefix, also cut the graph there (no gradient flows upstream)."""
        if not self._active():
            return None
        try:
            self._check_output(output)
        except Exception:
            self._rollback()  # an unfrozen prefix has run in train mode (its BatchNorms counted the batch)
            raise
        self._feature_dim = output.dim()
        detached = output.detach()
        if self.config.capture == "copy" or torch.compiler.is_compiling():
            # under torch.compile the version counter read here is the traced (fake) tensor's, a constant of the
            # graph unrelated to the real output's: capture="check" would misfire, so the compiled graph keeps a copy
            self._feature, self._feature_version = detached.clone(), None
        else:  # by reference: detach() shares the version counter, so an in-place change downstream is seen
            self._feature, self._feature_version = detached, detached._version
        return detached if self.config.freeze_prefix else None

    def _check_output(self, output: Any) -> None:
        """The layer output must be one non-empty ``(N, C, H, W)`` or ``(N, T, C)`` tensor in the expected layout."""
        assert self.split is not None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"AdvBN layer {self.split.layer!r} returned {type(output).__name__}, not a tensor: "
                            "attach to a layer whose output is a single (N, C, H, W) or (N, T, C) tensor")
        feature_layout(output, name=f"the output of layer {self.split.layer!r}")
        check_batch(f"the output of layer {self.split.layer!r}", output)
        if not self._layout_checked:
            check_layout(self.model, self.split.layer, output, self.config.layout)  # type: ignore[arg-type]
            self._layout_checked = True

    def _stats_view(self, f: torch.Tensor) -> torch.Tensor:
        """The feature as statistics see it: channels-last maps become tokens ``(N, H * W, C)``."""
        return f.flatten(1, 2) if self.config.layout == "nhwc" else f

    def discard(self) -> None:
        """Drop the feature cached by the last train-mode forward without attacking it (e.g. during a warm-up)."""
        self._feature = self._feature_version = self._inputs = self._snapshot = None

    def _take_feature(self) -> torch.Tensor:
        f = self._feature
        if f is None:
            raise RuntimeError("no cached feature: call model(images) in train mode (model.train()) right before "
                               "adversarial_loss(targets); each forward's feature is used once, and any later forward "
                               "of the model (also in eval mode, e.g. a validation batch) drops it")
        if self._feature_version is not None and f._version != self._feature_version:
            layer = self.split.layer  # type: ignore[union-attr]
            raise RuntimeError(
                f"the output of layer {layer!r} was modified in place after AdvBN captured it (an in-place op "
                "downstream, e.g. ReLU(inplace=True) or `out += identity`): attacking it would train on the modified "
                f"values. Use AdvBN({layer!r}, capture='copy') to keep a private copy, or attach at a layer whose "
                "output is not modified in place (a block or stage output)")
        return f

    # ---------------------------------------------------------------- the attack
    @property
    def last_multipliers(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(m, s)`` of the last attack, each of shape ``(1, C, 1, 1)`` (also for token features; ``(N, C, 1, 1)``
        with ``stats="instance"``); ``None`` before the first attack."""
        return self._multipliers

    @property
    def clamp(self) -> float | None | str:
        """The clamp applied to the layer's features: a number, ``None`` (no clamp), or ``"auto"`` while undecided.

        Before the first training batch this is ``clamp_min`` (the feature's rank is unknown); afterwards it is the
        setting for the rank seen, ``clamp_min`` for ``(N, C, H, W)`` maps and ``token_clamp_min`` for ``(N, T, C)``
        tokens, with ``"auto"`` replaced by the decision taken on the first attacked batch."""
        dim = self._feature_dim
        if dim is None:
            return self.config.clamp_min
        spec = self.config.clamp_min if dim == 4 else self.config.token_clamp_min
        return self._auto_clamp.get(dim, "auto") if spec == "auto" else spec

    def _clamp_for(self, f: torch.Tensor) -> float | None:
        spec = self.config.clamp_min if f.dim() == 4 else self.config.token_clamp_min
        if spec != "auto":
            return spec  # type: ignore[return-value]
        if f.dim() not in self._auto_clamp:
            nonneg = bool((f.detach().amin() >= 0).item())
            self._auto_clamp[f.dim()] = 0.0 if nonneg else None
            name = self.split.layer if self.split is not None else "the layer"
            _log.info("AdvBN at %r: clamp_min='auto' -> %s (the output on the first training batch is %s)", name,
                      "0.0" if nonneg else "None", "non-negative" if nonneg else "signed")
        return self._auto_clamp[f.dim()]

    def _check_finite(self, f: torch.Tensor, f_adv: torch.Tensor | None, nonfinite_grads: torch.Tensor) -> None:
        if self.config.check_finite:
            check_finite(self.split.layer, f, f_adv, nonfinite_grads)  # type: ignore[union-attr]

    def _suffix(self, feature: torch.Tensor, train: bool) -> torch.Tensor:
        assert self.split is not None
        out = self.split.run_suffix(feature, train=train, inputs=self._inputs)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the model returned {type(out).__name__}; AdvBN needs a logits tensor (N, K) "
                            "(set aux_logits=False or wrap the model so forward returns one tensor)")
        return out

    def _attack_suffix(self) -> Any:
        """The downstream layers for the attack passes (eval mode): eager, or compiled once (``compile_attack``)."""
        assert self.split is not None
        cfg = self.config
        if not (cfg.compile_attack or cfg.fold_bn):
            return lambda x: self._suffix(x, train=False)
        if self._attack_fn is None:
            split = self.split
            assert isinstance(split, FxSplit)
            fn = split.eval_suffix(fold_conv_bn if cfg.fold_bn else (lambda gm: gm))
            self._attack_fn = torch.compile(fn) if cfg.compile_attack else fn
        return self._attack_fn

    def _inner_pass(self) -> AbstractContextManager[None]:
        """The further layers' last multipliers applied (multi-layer AdvBN), or nothing."""
        if self._inner is None:
            return nullcontext()
        return self._inner.active(self._extra_multipliers)

    @property
    def multipliers_by_layer(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The last attack's ``(m, s)`` per layer: ``layer`` first, then each of ``extra_layers``; empty before."""
        if self._multipliers is None or self.split is None:
            return {}
        out = {self.split.layer: self._multipliers}
        if self._inner is not None:
            out.update(zip(self._inner.names, self._extra_multipliers))
        return out

    def _previous(self, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The last multipliers in ``mean``'s shape, or ``None`` if there are none for this channel count."""
        last = self._multipliers
        if last is None or last[0].numel() != mean.numel():
            return None
        return last[0].reshape(mean.shape), last[1].reshape(mean.shape)

    def _attack(self, f: torch.Tensor, targets: torch.Tensor | None, criterion: Criterion | None, *,
                reuse: bool = False) -> _AttackOut:
        """The multipliers for feature ``f``; ``reuse`` returns the last ones without attacking. With
        ``attack_loss="kl"`` the attack maximises the KL to the prediction on the unperturbed feature (returned as
        ``reference``) and starts from a random point."""
        cfg = self.config
        view, shape = self._stats_view(f), f.shape
        mean = feature_stats(view, self.config.stats == "instance").mean
        clamp = self._clamp_for(f)
        suffix = self._attack_suffix()
        reference = None
        self._busy = True
        try:
            with routed(self._duals, "adv"), augmenters_off(self.split.model):  # type: ignore[union-attr]
                if cfg.attack_loss == "kl":
                    with torch.no_grad():
                        ones = torch.ones_like(mean)
                        reference = suffix(perturb_stats(view, mean, ones, ones, clamp).to(f.dtype).reshape(shape))
                    criterion, targets = prediction_kl, reference
                previous = self._previous(mean)
                if reuse and previous is not None:
                    return _AttackOut(*previous, torch.zeros((), dtype=torch.int64, device=f.device), mean, reference)
                inner, extra_starts = self._inner, []
                if inner is not None:
                    if inner.shapes is None:  # first attack: one unperturbed pass finds the layers' channels
                        ones = torch.ones_like(mean)
                        with torch.no_grad(), inner.recording():
                            suffix(perturb_stats(view, mean, ones, ones, clamp).to(f.dtype).reshape(shape))
                    extra_starts = inner.starts(f.device)

                    def attacked(x: torch.Tensor, pairs: list) -> torch.Tensor:
                        with inner.active(pairs):
                            return suffix(x.reshape(shape))
                else:
                    def attacked(x: torch.Tensor) -> torch.Tensor:
                        return suffix(x.reshape(shape))
                m, s, nonfinite, extra = run_attack(attacked, view, targets, eps=cfg.eps, step_size=cfg.step_size,
                                                    steps=cfg.steps, clamp=clamp, criterion=criterion,
                                                    init=previous if cfg.warm_start else None,
                                                    random_start=cfg.random_start or cfg.attack_loss == "kl",
                                                    mean=mean, extra_starts=extra_starts)
                self._extra_multipliers = extra
                if self._multipliers is None:  # the first attack: did it do anything?
                    check_first_attack(self.split, cfg, self._inert_norms, clamp, m, s, nonfinite)
        finally:
            self._busy = False
        n = m.shape[0]  # 1 for batch statistics, N per instance
        self._multipliers = (m.reshape(n, -1, 1, 1), s.reshape(n, -1, 1, 1))
        return _AttackOut(m, s, nonfinite, mean, reference)

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
        """Apply multipliers ``m, s`` to ``feature`` with this AdvBN's clamp; returns ``feature``'s dtype.
        ``mean``: the feature's per-channel mean when already known."""
        view = self._stats_view(feature.detach())
        mean = feature_stats(view, self.config.stats == "instance").mean if mean is None else mean
        out = perturb_stats(view, mean, m.reshape(mean.shape), s.reshape(mean.shape), self._clamp_for(feature))
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
            f = self._take_feature()
            self.split.verify()
            check_targets(f, targets, self.config.attack_loss)
            if self.config.adv_fraction < 1:
                k = max(1, math.ceil(self.config.adv_fraction * f.shape[0]))
                f, targets = f[:k], (targets[:k] if targets is not None else None)
            criterion = criterion or F.cross_entropy
            every = self.config.attack_every
            reuse = every > 1 and self._steps_seen % every != 0
            self._steps_seen += 1
            out = self._attack(f, targets, criterion, reuse=reuse)
            x = self.perturb(f, out.m, out.s, mean=out.mean)
            self._check_finite(f, x, out.nonfinite)
            self._busy = True
            with routed(self._duals, "adv"), self._inner_pass(), augmenters_off(self.model):
                logits = self._suffix(x, train=True)
            if targets is None:  # label-free: consistency with the prediction on the unperturbed feature
                assert out.reference is not None
                loss = prediction_kl(logits, out.reference)
            else:
                loss = criterion(logits, targets)
            return (loss, logits) if return_logits else loss
        except Exception:
            self._rollback()
            raise
        finally:
            self._busy = False
            self.discard()

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
            self._rollback()
            raise
        return clean + self.adversarial_loss(targets, criterion)


AdvBN.__init__.__signature__ = init_signature()  # type: ignore[attr-defined]
AdvBN.__init__.__doc__ = init_docstring()


def attach(model: nn.Module, layer: str | int = "layer1", **kwargs: Any) -> AdvBN:
    """Shorthand for ``AdvBN(layer, **kwargs).attach(model)``."""
    return AdvBN(layer, **kwargs).attach(model)
