"""``StatsAugmenter``: stochastic feature-statistics augmenters (MixStyle, DSU) hooked onto any model by layer name.

An augmenter attaches to one layer (a dotted module name or a timm ``feature_info`` index, resolved by
:func:`~advbn_aug.split.resolve_layer`) through a forward hook that replaces the layer's output with
``augment(output)``. The output's layout is resolved as AdvBN resolves it (config option ``layout``): ``(N, C, H, W)``
maps (``"auto"``, refusing outputs that look channels-last, or ``"nchw"``), channels-last ``(N, H, W, C)`` maps
(``"nhwc"``, timm Swin stages) and ``(N, T, C)`` tokens (any 3-D output); statistics are always per sample and
channel, over the spatial positions or the tokens.

The model is not edited: :meth:`StatsAugmenter.detach` leaves its classes, ``state_dict`` keys and hooks as they
were. The hook is inert (returns ``None``, so the output is bitwise untouched) when the model it is attached to is in
eval mode, when the augmenter is disabled, and while ``torch.fx`` traces the model. It follows the model's
``training`` flag, not the layer's: a frozen layer kept in eval mode (a frozen prefix) is still augmented.

Randomness is drawn apart from its application, kornia style: ``params = aug.generate_parameters(x.shape, x.device)``
then ``aug.apply(x, params)``; ``augment(x)`` does both. Parameters come from the augmenter's optional
``torch.Generator`` (reproducible) or the global RNG. Statistics are computed in float32; outputs keep the input's
dtype and memory format. One instance serves one layer; attach several instances for several layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import field
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import nn

from advbn_aug.config import DictConfig
from advbn_aug.feature.checks import check_layout
from advbn_aug.feature.config import Layout
from advbn_aug.feature.hooks import OwnedHook, hook_owners, remove_hooks, training_forward
from advbn_aug.split import resolve_layer

__all__ = ["StatsAugmenter", "attached_augmenters", "instance_stats", "sample_beta", "check_probability",
           "check_positive", "layout_field", "check_layout_option", "LAYOUT_HELP"]

Params = dict[str, Any]
_Read = Literal["nchw", "nhwc", "tokens"]  # how an output is read: its layout once resolved
_Aug = TypeVar("_Aug", bound="StatsAugmenter")

LAYOUT_HELP = ("layout of the layer output: 'auto' reads 4-D outputs as (N, C, H, W) and refuses those that look "
               "channels-last (as AdvBN does), 'nchw' forces (N, C, H, W), 'nhwc' for channels-last stage outputs "
               "(timm Swin); 3-D outputs are tokens (N, T, C), with statistics over T")


def layout_field() -> Any:
    """The ``layout`` field of a feature augmenter's config: declared here once, with its help text."""
    return field(default="auto", metadata={"help": LAYOUT_HELP})


def check_layout_option(layout: Any) -> Layout:
    """``layout`` if it is ``"auto"``, ``"nchw"`` or ``"nhwc"``; raises ``ValueError`` otherwise."""
    if layout not in ("auto", "nchw", "nhwc"):
        raise ValueError(f"layout must be 'auto', 'nchw' or 'nhwc', got {layout!r}")
    return layout


def _nchw_shape(shape: tuple[int, ...], read: _Read) -> tuple[int, ...]:
    """The ``(N, C, H, W)`` shape statistics are taken on (tokens ``(N, T, C)``: ``(N, C, T, 1)``)."""
    if read == "nhwc":
        return (shape[0], shape[3], shape[1], shape[2])
    if read == "tokens":
        return (shape[0], shape[2], shape[1], 1)
    return shape


def _to_nchw(x: torch.Tensor, read: _Read) -> torch.Tensor:
    """A ``(N, C, H, W)`` view of ``x`` (no copy); ``x`` itself when it is one."""
    if read == "nhwc":
        return x.permute(0, 3, 1, 2)
    if read == "tokens":
        return x.transpose(1, 2).unsqueeze(-1)
    return x


def _from_nchw(y: torch.Tensor, read: _Read) -> torch.Tensor:
    """The inverse of :func:`_to_nchw`."""
    if read == "nhwc":
        return y.permute(0, 2, 3, 1)
    if read == "tokens":
        return y.squeeze(-1).transpose(1, 2)
    return y


def check_probability(p: float, name: str = "p") -> float:
    """``p`` as a float in ``[0, 1]``; raises ``ValueError`` otherwise."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_positive(value: float, name: str, meaning: str = "") -> float:
    """``value`` as a float ``> 0`` (a bool is refused); raises ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be > 0{f' ({meaning})' if meaning else ''}, got {value!r}")
    return float(value)


def instance_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-instance channel ``(mean, sqrt(var + eps))`` of ``x`` ``(N, C, H, W)`` over ``(H, W)``, float32,
    shaped ``(N, C, 1, 1)``. Unbiased variance as in the reference code (biased for a 1x1 map)."""
    f = x.float()
    var, mean = torch.var_mean(f, dim=(2, 3), keepdim=True, correction=1 if x.shape[2] * x.shape[3] > 1 else 0)
    return mean, (var + eps).sqrt()


def _log_gamma(k: float, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``log`` of ``n`` Gamma(k, 1) samples, float64 (Marsaglia-Tsang; ``k < 1`` boosted to ``k + 1`` in log space)."""
    a = k + 1.0 if k < 1.0 else k
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    while todo.numel():
        z = torch.randn(todo.numel(), generator=generator, device=device, dtype=torch.float64)
        u = torch.rand(todo.numel(), generator=generator, device=device, dtype=torch.float64)
        v = (1.0 + c * z) ** 3
        log_v = v.clamp_min(1e-300).log()
        ok = (v > 0) & (u.log() < 0.5 * z * z + d - d * v + d * log_v)
        out[todo[ok]] = math.log(d) + log_v[ok]
        todo = todo[~ok]
    if k < 1.0:
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        out = out + torch.log1p(-u) / k  # Gamma(k) = Gamma(k + 1) * U^(1/k), U in (0, 1]
    return out


def sample_beta(alpha: float, n: int, *, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` samples of Beta(alpha, alpha), ``(n,)`` in ``dtype``, drawn from ``generator`` (``torch.distributions``
    takes none). Computed in float64 log space, so small ``alpha`` (MixStyle's 0.1) neither underflows nor gives
    NaN (in float32 about 10% of Beta(0.1, 0.1) draws round to exactly 1.0)."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    device = torch.device(device)
    g1, g2 = _log_gamma(alpha, n, generator, device), _log_gamma(alpha, n, generator, device)
    return torch.sigmoid(g1 - g2).to(dtype)


class _AugmentHook(OwnedHook):
    """Forward hook on the augmented layer; holds its owner so a deep copy of the model gets its own augmenter."""

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        return self.owner._on_output(module, output)


def attached_augmenters(model: nn.Module) -> list[StatsAugmenter]:
    """The :class:`StatsAugmenter` instances hooked into ``model`` (e.g. the copies living in a deep copy of it)."""
    return hook_owners(model, _AugmentHook)


class StatsAugmenter:
    """Base class: a stochastic feature augmenter applied at one layer, output shape, dtype and memory format kept.

    Subclasses state ``kind`` and ``config_class`` (a :class:`~advbn_aug.config.DictConfig` dataclass with at least
    ``layer``, ``p`` and ``seed``, and ``layout`` from :func:`layout_field`; without it ``"auto"``) and implement
    :meth:`_generate` and :meth:`_apply`, which always see ``(N, C, H, W)``: the base resolves the layout and hands
    them an ``(N, C, H, W)`` view of channels-last maps and tokens. With probability ``p`` a training forward is
    augmented (the whole batch, as in the papers). Satisfies :class:`~advbn_aug.policy.FeatureAugmenter`;
    :meth:`loss_term` is ``None`` (the clean forward itself is augmented).

    Args:
        layer: module name or timm ``feature_info`` index whose output is augmented.
        generator: the source of the random draws; default: a CPU generator seeded with ``seed`` when that is set,
            else torch's global RNG.
        **options: the other fields of ``config_class`` (``p``, ``seed``, ``layout``, the subclass's own).
    """

    kind: ClassVar[str] = "augmenter"
    config_class: ClassVar[type[DictConfig]]
    config: Any

    def __init__(self, layer: str | int = "layer1", *, generator: torch.Generator | None = None,
                 **options: Any) -> None:
        self.config = self.config_class.from_dict({"layer": layer, **options})
        if generator is None and self.config.seed is not None:
            generator = torch.Generator().manual_seed(self.config.seed)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        self.active = True
        self.model: nn.Module | None = None
        self.layer: str | None = None  # the resolved module name once attached
        self.last_params: Params | None = None  # the parameters of the last augmented forward

    @classmethod
    def from_config(cls: type[_Aug], config: DictConfig | dict[str, Any], *, generator: torch.Generator | None = None
                    ) -> _Aug:
        """An instance from ``config`` (a ``config_class`` instance or its dict form, e.g. read from YAML)."""
        cfg = config if isinstance(config, cls.config_class) else cls.config_class.from_dict(dict(config))
        return cls(generator=generator, **cfg.to_dict())

    # ---------------------------------------------------------------- description
    def _describe(self) -> str:
        return ""

    def __repr__(self) -> str:
        where = f"attached to {type(self.model).__name__}.{self.layer}" if self.model is not None else "detached"
        extra = self._describe()
        return (f"{type(self).__name__}(layer={self.config.layer!r}, p={self.config.p}{', ' + extra if extra else ''}, "
                f"active={self.active}, {where})")

    # ---------------------------------------------------------------- attach / detach
    @property
    def attached(self) -> bool:
        return self.model is not None

    def attach(self, model: nn.Module) -> StatsAugmenter:
        """Hook into ``model``'s layer ``config.layer`` (in place); returns ``self``. Raises ``ValueError`` listing
        candidate layers when the layer is unknown, ``RuntimeError`` when this instance is attached already."""
        if self.model is not None:
            raise RuntimeError(f"this {type(self).__name__} is already attached to {type(self.model).__name__}."
                               f"{self.layer}; call detach() first, or create one instance per layer")
        name = resolve_layer(model, self.config.layer)
        model.get_submodule(name).register_forward_hook(_AugmentHook(self))
        self.model, self.layer, self.last_params = model, name, None
        return self

    def detach(self, keep: str = "clean") -> nn.Module:
        """Remove the hook; returns the model exactly as before :meth:`attach`. ``keep`` exists for the
        :class:`~advbn_aug.policy.Policy` interface: only ``"clean"`` is valid (no adversarial norm copies here)."""
        if keep != "clean":
            raise ValueError(f"{type(self).__name__} keeps no adversarial BatchNorm copies (it adds no aux BNs), so "
                             f"keep={keep!r} does not apply: detach with keep='clean' (the default)")
        if self.model is None or self.layer is None:
            raise RuntimeError(f"this {type(self).__name__} is not attached: call attach(model) first")
        model = self.model
        remove_hooks(model, self)  # by owner, not by handle: a deep copy of the model holds copied hooks
        self.model, self.layer = None, None
        return model

    # ---------------------------------------------------------------- switching
    def set_active(self, active: bool) -> None:
        """Enable or disable the augmentation (a disabled augmenter's hook is inert)."""
        self.active = bool(active)

    @contextmanager
    def _switched(self, flag: bool) -> Iterator[StatsAugmenter]:
        saved = self.active
        self.active = flag
        try:
            yield self
        finally:
            self.active = saved

    def enabled(self) -> AbstractContextManager[StatsAugmenter]:
        """``with aug.enabled(): ...``: active inside the block, the previous state restored afterwards."""
        return self._switched(True)

    def disabled(self) -> AbstractContextManager[StatsAugmenter]:
        """``with aug.disabled(): ...``: inert inside the block, the previous state restored afterwards."""
        return self._switched(False)

    def loss_term(self, targets: torch.Tensor, criterion: Any = None) -> torch.Tensor | None:
        """No extra loss: the augmentation happens inside the clean forward."""
        return None

    # ---------------------------------------------------------------- randomness and application
    def _draw_applied(self) -> bool:
        """One Bernoulli(p) draw for the whole batch (on the generator's device; CPU for the global RNG)."""
        device = self.generator.device if self.generator is not None else torch.device("cpu")
        return bool(torch.rand((), generator=self.generator, device=device) < self.config.p)

    def _param_device(self, device: torch.device) -> torch.device:
        """Where random parameters are drawn: the generator's device, else ``device``."""
        return self.generator.device if self.generator is not None else torch.device(device)

    def generate_parameters(self, shape: Sequence[int], device: torch.device | str = "cpu") -> Params:
        """Random parameters for a layer output of ``shape`` (``(N, C, H, W)``, ``(N, H, W, C)`` with
        ``layout="nhwc"``, or tokens ``(N, T, C)``), as tensors on ``device``.

        Always holds ``"applied"`` (bool: whether this batch is augmented, probability ``p``); the rest only when
        applied (see the subclass; per channel ``C`` whatever the layout)."""
        shape = tuple(int(s) for s in shape)
        return self._generate_for(_nchw_shape(shape, self._read(shape)), torch.device(device))

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """``x`` (a layer output, see :meth:`generate_parameters`) augmented with ``params``; ``x`` itself when
        ``params["applied"]`` is false. Same shape, dtype and memory format as ``x``."""
        read = self._check_feature(x)
        if not params.get("applied", False):
            return x
        return self._restyled(x, read, params)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Draw parameters and apply them (what the hook does in a training forward); records ``last_params``."""
        read = self._check_feature(x)
        params = self._generate_for(_nchw_shape(tuple(x.shape), read), x.device)
        self.last_params = params
        if not params["applied"]:
            return x
        return self._restyled(x, read, params)

    def _generate_for(self, shape: tuple[int, ...], device: torch.device) -> Params:
        """Parameters for the ``(N, C, H, W)`` statistics shape: the Bernoulli(p) draw, then the subclass's."""
        if not self._draw_applied():
            return {"applied": False}
        return {"applied": True, **self._generate(shape, device)}

    def _restyled(self, x: torch.Tensor, read: _Read, params: Params) -> torch.Tensor:
        """:meth:`_apply` on the ``(N, C, H, W)`` view of ``x``, returned in ``x``'s layout."""
        view = _to_nchw(x, read)
        out = self._apply(view, params)
        return x if out is view else _from_nchw(out, read)

    def _statistics_view(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` checked and viewed as ``(N, C, H, W)`` (what :meth:`_apply` works on)."""
        return _to_nchw(x, self._check_feature(x))

    def _generate(self, shape: tuple[int, ...], device: torch.device) -> Params:
        raise NotImplementedError

    def _apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        raise NotImplementedError

    def _read(self, shape: tuple[int, ...]) -> _Read:
        """How an output of ``shape`` is read, resolved from ``config.layout`` as AdvBN resolves it; raises
        ``ValueError`` for what cannot be read (other ranks, outputs that look channels-last under ``"auto"``)."""
        name = type(self).__name__
        if len(shape) not in (3, 4):
            where = f" at layer {self.layer!r}" if self.layer is not None else ""
            raise ValueError(f"{name}{where} needs a (N, C, H, W) feature map (or (N, H, W, C) with layout='nhwc', "
                             f"or (N, T, C) tokens), got shape {shape}: pick a stage or block output (e.g. 'layer1')")
        layout: Layout = getattr(self.config, "layout", "auto")
        layer = self.layer if self.layer is not None else str(self.config.layer)
        check_layout(self.model, layer, torch.empty(shape, device="meta"), layout, who=name)
        if len(shape) == 3:
            return "tokens"
        return "nhwc" if layout == "nhwc" else "nchw"

    def _check_feature(self, x: Any) -> _Read:
        """Check a layer output; returns how it is read (see :meth:`_read`)."""
        where = f" at layer {self.layer!r}" if self.layer is not None else ""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__}{where} got a {type(x).__name__}, not a tensor: attach it to a "
                            "layer whose output is a single (N, C, H, W) tensor")
        if not x.is_floating_point():
            raise ValueError(f"{type(self).__name__}{where} needs a floating feature, got shape {tuple(x.shape)} "
                             f"({x.dtype})")
        return self._read(tuple(x.shape))

    # ---------------------------------------------------------------- the hook
    def _on_output(self, module: nn.Module, output: Any) -> Any:
        # the model's flag, not the layer's: a frozen layer (BN statistics kept by eval mode, as AdvBN's prefix and
        # the recipes do) still has its output re-styled while the model trains; a deep copy has its own owner
        if not (self.active and training_forward(self.model if self.model is not None else module)):
            return None
        return self.augment(output)
