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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from .config import DictConfig
from .dual_norm import convert_dual_norm, fold_dual_norm, routed
from .split import ModelSplit, SplitMode, split_model
from .stats import feature_layout, feature_stats, perturb_stats

__all__ = ["AdvBN", "AdvBNConfig", "attach"]

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class AdvBNConfig(DictConfig):
    """AdvBN settings; the defaults are the paper's.

    Args:
        layer: module name (``layer1``, ``stages.0``, ``blocks.5``) or timm ``feature_info`` index to attack after.
        eps: multipliers stay in ``[1 - eps, 1 + eps]``.
        step_size: PGD sign-step size on the multipliers.
        steps: number of PGD steps (0: no attack, the adversarial term uses unperturbed features).
        clamp_min: lower clamp of perturbed ``(N, C, H, W)`` features (0: re-apply the ReLU); ``None`` disables it.
        token_clamp_min: the same for ``(N, T, C)`` token features; off by default (tokens are not post-ReLU).
        dual_bn: give downstream BatchNorms an adversarial copy (AdvProp-style auxiliary BN).
        dual_ln: also duplicate downstream LayerNorm/GroupNorm (they have no running statistics: off by default).
        freeze_prefix: freeze the layers up to and including ``layer`` (no gradients, BatchNorm in eval mode).
        split: ``"auto"`` (torch.fx, falling back to hook substitution), ``"fx"`` or ``"hook"``.
        check_finite: raise on non-finite features instead of training on them.
    """

    layer: str | int = "layer1"
    eps: float = 1.1
    step_size: float = 0.2
    steps: int = 6
    clamp_min: float | None = 0.0
    token_clamp_min: float | None = None
    dual_bn: bool = True
    dual_ln: bool = False
    freeze_prefix: bool = True
    split: SplitMode = "auto"
    check_finite: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.layer, (str, int)) or isinstance(self.layer, bool) or self.layer == "":
            raise ValueError(f"layer must be a module name or a feature_info index, got {self.layer!r}")
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0 (the multiplier box is [1 - eps, 1 + eps]), got {self.eps}")
        if not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}; use steps=0 to disable the attack")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if self.split not in ("auto", "fx", "hook"):
            raise ValueError(f"split must be 'auto', 'fx' or 'hook', got {self.split!r}")


def _is_data_parallel(model: nn.Module) -> bool:
    return isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel))


class _CaptureHook:
    """Forward hook on the attacked layer: caches its output in train mode; inert otherwise."""

    def __init__(self, owner: AdvBN):
        self.owner = owner

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        return self.owner._capture(output)


class _RootPreHook:
    """Forward pre-hook on the model: keeps the frozen prefix in eval mode, caches inputs for the hook split."""

    def __init__(self, owner: AdvBN):
        self.owner = owner

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.owner._before_forward(args, kwargs)


class AdvBN:
    """Adversarial Batch Normalization as a plugin: hooks on any model, removable with :meth:`detach`.

    After ``attach(model)``, every train-mode forward of ``model`` caches the output ``f`` of ``layer``;
    :meth:`adversarial_loss` then finds multipliers ``m, s`` (batch-shared, per channel) that maximise the loss of
    ``suffix(clamp((f - mu) * s + mu * m))`` by ``steps`` sign-gradient steps within ``[1 - eps, 1 + eps]``, and
    returns the loss of the downstream layers on those features. Eval-mode forwards are untouched.
    """

    def __init__(self, layer: str | int, *, eps: float = 1.1, step_size: float = 0.2, steps: int = 6,
                 clamp_min: float | None = 0.0, dual_bn: bool = True, freeze_prefix: bool = True,
                 token_clamp_min: float | None = None, dual_ln: bool = False, split: SplitMode = "auto",
                 check_finite: bool = True):
        self.config = AdvBNConfig(layer=layer, eps=eps, step_size=step_size, steps=steps, clamp_min=clamp_min,
                                  token_clamp_min=token_clamp_min, dual_bn=dual_bn, dual_ln=dual_ln,
                                  freeze_prefix=freeze_prefix, split=split, check_finite=check_finite)
        self.model: nn.Module | None = None
        self.split: ModelSplit | None = None
        self._duals: list[nn.Module] = []
        self._requires_grad: dict[nn.Parameter, bool] = {}
        self._feature: torch.Tensor | None = None
        self._inputs: tuple[tuple, dict] | None = None
        self._busy = False
        self._multipliers: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_config(cls, config: AdvBNConfig | dict) -> AdvBN:
        cfg = config if isinstance(config, AdvBNConfig) else AdvBNConfig.from_dict(config)
        return cls(**cfg.to_dict())

    def __repr__(self) -> str:
        where = f"attached to {type(self.model).__name__} ({self.split.mode} split)" if self.split else "detached"
        c = self.config
        return f"AdvBN(layer={c.layer!r}, eps={c.eps}, step_size={c.step_size}, steps={c.steps}, {where})"

    # ---------------------------------------------------------------- attach / detach
    @property
    def attached(self) -> bool:
        return self.model is not None

    def attach(self, model: nn.Module) -> AdvBN:
        """Hook into ``model`` (in place) and return ``self``. Build the optimizer afterwards: the adversarial
        BatchNorm copies are new parameters."""
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
        split = split_model(model, self.config.layer, self.config.split)
        self.model, self.split = model, split
        if self.config.freeze_prefix:
            for p in split.prefix_params:
                self._requires_grad[p] = p.requires_grad
                p.requires_grad_(False)
        if self.config.dual_bn or self.config.dual_ln:
            self._duals = convert_dual_norm(split.suffix_modules, batch_norm=self.config.dual_bn,
                                            layer_norm=self.config.dual_ln)
        split.layer_module.register_forward_hook(_CaptureHook(self))
        model.register_forward_pre_hook(_RootPreHook(self), with_kwargs=True)
        return self

    def detach(self) -> nn.Module:
        """Remove every hook, fold the dual norms back to their clean copies, unfreeze the prefix; return the model
        with its original module classes and ``state_dict`` keys."""
        if self.model is None or self.split is None:
            raise RuntimeError("this AdvBN is not attached: call attach(model) first")
        model = self.model
        for m in model.modules():
            for hooks in (m._forward_hooks, m._forward_pre_hooks):
                for key in [k for k, h in hooks.items()
                            if isinstance(h, (_CaptureHook, _RootPreHook)) and h.owner is self]:
                    del hooks[key]
                    m._forward_pre_hooks_with_kwargs.pop(key, None)
        fold_dual_norm(self._duals)
        for p, flag in self._requires_grad.items():
            p.requires_grad_(flag)
        for m in self.split.prefix_modules:
            m.training = model.training
        self.model, self.split, self._duals, self._requires_grad = None, None, [], {}
        self._feature = self._inputs = None
        return model

    # ---------------------------------------------------------------- hooks
    def _active(self) -> bool:
        return self.model is not None and self.model.training and not self._busy and not is_fx_symbolic_tracing()

    def _before_forward(self, args: tuple, kwargs: dict) -> None:
        if not self._active():
            return
        assert self.split is not None
        if self.config.freeze_prefix:
            for m in self.split.prefix_modules:
                m.training = False
        self._feature = None
        self._inputs = (args, kwargs) if self.split.mode == "hook" else None

    def _capture(self, output: Any) -> Any:
        """Cache the layer output; with a frozen prefix, also cut the graph there (no gradient flows upstream)."""
        if not self._active():
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"AdvBN layer {self.split.layer!r} returned {type(output).__name__}, not a tensor: "  # type: ignore[union-attr]
                            "attach to a layer whose output is a single (N, C, H, W) or (N, T, C) tensor")
        feature_layout(output, name=f"the output of layer {self.split.layer!r}")  # type: ignore[union-attr]
        self._feature = output.detach()
        return self._feature if self.config.freeze_prefix else None

    # ---------------------------------------------------------------- the attack
    @property
    def last_multipliers(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(m, s)`` of the last attack, each of shape ``(1, C, 1, 1)`` (also for token features); ``None``
        before the first attack."""
        return self._multipliers

    def _clamp_for(self, f: torch.Tensor) -> float | None:
        return self.config.clamp_min if f.dim() == 4 else self.config.token_clamp_min

    def _check(self, f: torch.Tensor, targets: torch.Tensor) -> None:
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"targets must be a tensor, got {type(targets).__name__}")
        if targets.dim() == 0 or targets.shape[0] != f.shape[0]:
            raise ValueError(f"targets have shape {tuple(targets.shape)} but the batch has {f.shape[0]} samples: pass "
                             "one class index per sample (N,) or one probability row per sample (N, K)")
        if self.config.check_finite and not bool(torch.isfinite(f).all()):
            raise FloatingPointError(f"the output of layer {self.split.layer!r} contains NaN or Inf: the model "  # type: ignore[union-attr]
                                     "diverged or the input is not finite; AdvBN refuses to train on it (lower the "
                                     "learning rate, check the inputs, or use AMP with a GradScaler)")

    def _suffix(self, feature: torch.Tensor, train: bool) -> torch.Tensor:
        assert self.split is not None
        out = self.split.run_suffix(feature, train=train, inputs=self._inputs)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the model returned {type(out).__name__}; AdvBN needs a logits tensor (N, K) "
                            "(set aux_logits=False or wrap the model so forward returns one tensor)")
        return out

    def attack(self, feature: torch.Tensor, targets: torch.Tensor, criterion: Criterion | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """PGD on the statistics multipliers for ``feature`` (the layer output, ``(N, C, H, W)`` or ``(N, T, C)``).

        Returns ``(m, s)`` with the multiplier shape of the feature (``(1, C, 1, 1)`` or ``(1, 1, C)``). The
        downstream layers run in eval mode through the adversarial norms; no parameter gradient is accumulated.
        """
        if self.split is None:
            raise RuntimeError("attach(model) before attacking")
        feature_layout(feature, name=f"the output of layer {self.split.layer!r}")
        self._check(feature, targets)
        criterion = criterion or F.cross_entropy
        cfg = self.config
        f = feature.detach()
        mean = feature_stats(f).mean
        m = torch.ones_like(mean)
        s = torch.ones_like(mean)
        lo, hi = 1.0 - cfg.eps, 1.0 + cfg.eps
        # a constant loss scale keeps float16 gradients from underflowing; the sign step ignores it
        scale = 1024.0 if f.is_cuda and torch.is_autocast_enabled("cuda") and \
            torch.get_autocast_dtype("cuda") == torch.float16 else 1.0
        self._busy = True
        try:
            with routed(self._duals, "adv"), torch.enable_grad():
                for _ in range(cfg.steps):
                    m.requires_grad_(True)
                    s.requires_grad_(True)
                    x = perturb_stats(f, mean, m, s, self._clamp_for(f)).to(f.dtype)
                    loss = criterion(self._suffix(x, train=False).float(), targets)
                    gm, gs = torch.autograd.grad(loss * scale, (m, s))
                    with torch.no_grad():
                        m = (m + cfg.step_size * gm.sign()).clamp_(lo, hi)
                        s = (s + cfg.step_size * gs.sign()).clamp_(lo, hi)
        finally:
            self._busy = False
        m, s = m.detach(), s.detach()
        c = mean.numel()
        self._multipliers = (m.reshape(1, c, 1, 1), s.reshape(1, c, 1, 1))
        return m, s

    def perturb(self, feature: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Apply multipliers ``m, s`` to ``feature`` with this AdvBN's clamp; returns ``feature``'s dtype."""
        mean = feature_stats(feature).mean
        return perturb_stats(feature.detach(), mean, m.reshape(mean.shape), s.reshape(mean.shape),
                             self._clamp_for(feature)).to(feature.dtype)

    # ---------------------------------------------------------------- losses
    def adversarial_loss(self, targets: torch.Tensor, criterion: Criterion | None = None) -> torch.Tensor:
        """The adversarial term for the features cached by the last train-mode forward of the model.

        Attacks the cached feature, then runs the downstream layers in train mode through the adversarial norms
        and returns ``criterion(logits_adv, targets)`` (cross-entropy by default). The cache is consumed.
        """
        if self.model is None:
            raise RuntimeError("this AdvBN is not attached: call attach(model) first")
        f = self._feature
        if f is None:
            raise RuntimeError("no cached feature: call model(images) in train mode (model.train()) right before "
                               "adversarial_loss(targets); each forward's feature is used once")
        criterion = criterion or F.cross_entropy
        try:
            m, s = self.attack(f, targets, criterion)
            x = self.perturb(f, m, s)
            self._busy = True
            with routed(self._duals, "adv"):
                return criterion(self._suffix(x, train=True), targets)
        finally:
            self._busy = False
            self._feature = self._inputs = None

    def loss(self, images: torch.Tensor, targets: torch.Tensor, criterion: Criterion | None = None, *,
             model: nn.Module | None = None) -> torch.Tensor:
        """The paper's training loss ``criterion(model(images), y) + criterion(suffix_adv(f_adv), y)``.

        ``model`` is the module to run the clean forward through (default: the attached model); pass the DDP
        wrapper here so the clean forward synchronises gradients.
        """
        if self.model is None:
            raise RuntimeError("this AdvBN is not attached: call attach(model) first")
        net = model if model is not None else self.model
        if not net.training:
            raise RuntimeError("AdvBN.loss is a training loss: call model.train() first (eval forwards are inert)")
        criterion = criterion or F.cross_entropy
        out = net(images)
        return criterion(out, targets) + self.adversarial_loss(targets, criterion)


def attach(model: nn.Module, layer: str | int = "layer1", **kwargs: Any) -> AdvBN:
    """Shorthand for ``AdvBN(layer, **kwargs).attach(model)``."""
    return AdvBN(layer, **kwargs).attach(model)
