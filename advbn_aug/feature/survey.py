"""Survey the layers of a model where AdvBN could perturb feature statistics (the ``advbn-aug layers MODEL``
command: :mod:`advbn_aug.cli.layers`).

:func:`suggest_layers` lists candidate layers with what decides the choice: the output's shape and layout, whether it
is non-negative (the ReLU clamp), whether a BatchNorm right after it undoes AdvBN there
(:mod:`advbn_aug.feature.inert`), the share of the compute after it (the attack re-runs that part several times per
step) and whether :func:`~advbn_aug.split.split_model` cuts the model there with torch.fx or the hook fallback. It runs
one no-grad eval forward and one split per candidate, and leaves the model as it found it (parameters, buffers,
modules, hooks, ``training`` flags and the global RNG).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from advbn_aug.feature.inert import batchnorms_after, describe
from advbn_aug.split import SplitFallbackWarning, split_model

__all__ = ["LayerCandidate", "suggest_layers", "format_layer_table", "default_input"]

Layout = Literal["spatial", "tokens", "channels_last"]
SplitPath = Literal["fx", "hook", "none"]


@dataclass(frozen=True)
class LayerCandidate:
    """One candidate layer of :func:`suggest_layers`.

    ``name``: dotted module name (pass it as AdvBN's layer); ``feature_info_index``: its index in timm's
    ``model.feature_info`` (``None`` for other models); ``shape``: output shape on the example batch, batch axis
    included; ``layout``: ``"spatial"`` ``(N, C, H, W)``, ``"tokens"`` ``(N, T, C)`` or ``"channels_last"``
    ``(N, H, W, C)`` (Swin stages: AdvBN needs ``layout='nhwc'``); ``nonneg``: the output was ``>= 0`` everywhere (the
    ReLU clamp applies; ``clamp_min='auto'`` decides the same); ``suffix_flops_fraction``: share of the forward's
    flops after the layer's output; ``path``: how the model splits there (``"fx"``, ``"hook"``, or ``"none"`` when
    it cannot) and ``reason``: why; ``inert``: why AdvBN (batch statistics, ``clamp_min="auto"``) would do nothing
    there, ``""`` when it acts: the output is signed and goes only into BatchNorms, which undo the perturbation in the
    adversarial pass (DenseNet block outputs, pre-activation ResNet stages); the text names a layer to use instead.
    """

    name: str
    feature_info_index: int | None
    shape: tuple[int, ...]
    layout: Layout
    nonneg: bool
    suffix_flops_fraction: float
    path: SplitPath
    reason: str
    inert: str = ""


def _feature_info(model: nn.Module) -> list[tuple[str, int | None]]:
    """``(module name, channels)`` per entry of timm's ``model.feature_info`` (list of dicts or ``FeatureInfo``)."""
    info = getattr(model, "feature_info", None)
    if info is None:
        return []
    dicts = info.get_dicts() if hasattr(info, "get_dicts") else info
    try:
        return [(str(d["module"]), d.get("num_chs")) for d in dicts if isinstance(d, dict) and "module" in d]
    except TypeError:
        return []


def _is_stem(module: nn.Module, name: str) -> bool:
    """A stem output: a module without children, a norm(+act) layer, or a module named ``stem*``."""
    norms = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
    return next(module.children(), None) is None or isinstance(module, norms) or name.split(".")[-1].startswith("stem")


def _deep(module: nn.Module) -> bool:
    """Whether ``module`` has a child that has children (a stage of blocks rather than a conv-norm-act group)."""
    return any(next(c.children(), None) is not None for c in module.children())


def _children(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Named children, plain ``ModuleList`` / ``ModuleDict`` (which never run themselves) replaced by theirs."""
    out = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if type(child) in (nn.ModuleList, nn.ModuleDict):
            out += _children(child, f"{full}.")
        else:
            out.append((full, child))
    return out


def _tree_candidates(model: nn.Module) -> list[str]:
    """Candidates from the module tree of a model without ``feature_info``.

    Descend from the model while exactly one child is *deep* (see :func:`_deep`: torchvision's ``features``,
    ``encoder``, ``encoder.layers``, ``trunk_output``); the candidates are the children with children of where the
    descent stops (``layer1``..``layer4``, ``features.denseblock1``, ``features.3``,
    ``encoder.layers.encoder_layer_0``), less the stem: the groups before the first deep child and any child named
    ``stem*``. Leaves (pools, heads) are never candidates; outputs that are not 3-D or 4-D are dropped later.
    """
    prefix, node = "", model
    while True:
        kids = _children(node, prefix)
        deep = [(n, m) for n, m in kids if _deep(m)]
        if len(deep) != 1:
            break
        prefix, node = f"{deep[0][0]}.", deep[0][1]
    groups = [(n, m) for n, m in kids if next(m.children(), None) is not None]
    first_deep = next((i for i, (_, m) in enumerate(groups) if _deep(m)), 0)
    return [n for n, _ in groups[first_deep:] if not n.split(".")[-1].startswith("stem")]


def _candidate_names(model: nn.Module) -> list[tuple[str, int | None, int | None]]:
    """``(name, feature_info index, channels)``: timm's ``feature_info`` less the stem (entry 0 when it is a leaf, a
    norm or ``stem*``: resnet ``act1``, regnet ``stem``), else :func:`_tree_candidates`."""
    info = _feature_info(model)
    if info:
        return [(name, i, chs) for i, (name, chs) in enumerate(info)
                if not (i == 0 and _is_stem(model.get_submodule(name), name))]
    return [(name, None, None) for name in _tree_candidates(model)]


def default_input(model: nn.Module, img_size: int | None) -> torch.Tensor:
    """A seeded random batch of 2 at the model's input size: ``img_size``, else a timm model's fixed
    ``patch_embed.img_size`` or ``pretrained_cfg['input_size']``, else 224 (3 channels)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    chans, height, width = tuple(cfg.get("input_size", (3, 224, 224)))
    fixed = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(fixed, (tuple, list)) and len(fixed) == 2:
        height, width = fixed
    if img_size is not None:
        height = width = img_size
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)  # the global RNG stays untouched
    return torch.randn(2, chans, height, width, generator=gen).to(device=device, dtype=dtype)


def _cpu_sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                    **kwargs: Any) -> int:
    """FlopCounterMode has no formula for CPU fused attention (timm ViTs); use its generic attention one."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode, ``training`` flags restored afterwards."""
    saved = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for m, flag in saved.items():
            m.training = flag


@dataclass
class _Seen:
    calls: int = 0
    shape: tuple[int, ...] = ()
    nonneg: bool = False
    flops_before: int = 0


def _probe(model: nn.Module, x: torch.Tensor, names: list[str]) -> tuple[dict[str, _Seen], int]:
    """One no-grad eval forward under ``FlopCounterMode``: per layer its calls, output shape, sign and the flops
    counted when its output was ready (everything before it, itself included); and the forward's total flops."""
    seen = {name: _Seen() for name in names}
    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_sdpa: _cpu_sdpa_flops})

    def hook(name: str) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            s = seen[name]
            s.calls += 1
            if isinstance(output, torch.Tensor):
                s.shape, s.nonneg = tuple(output.shape), bool((output.detach().amin() >= 0).item())
            s.flops_before = counter.get_total_flops()
        return record

    handles = [model.get_submodule(name).register_forward_hook(hook(name)) for name in names]
    try:
        with torch.no_grad(), _eval(model), counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen, counter.get_total_flops()


def _layout(shape: tuple[int, ...], channels: int | None, nhwc_model: bool) -> Layout:
    """Tokens for 3-D. Channels-last for 4-D when the timm model says so (``output_fmt == 'NHWC'``: Swin, MambaOut),
    else when timm's channel count is the last axis (not axis 1), else without one when axes 1 and 2 are equal and
    axis 3 differs (the rule of AdvBN's layout check)."""
    if len(shape) == 3:
        return "tokens"
    _, a, b, c = shape
    nhwc = nhwc_model or ((a != channels and c == channels) if channels else (a == b != c))
    return "channels_last" if nhwc else "spatial"


def _split_path(model: nn.Module, name: str, x: torch.Tensor) -> tuple[SplitPath, str, str]:
    """Build the ``mode="auto"`` split at ``name`` (recording the hook split from ``x``), then close it; the third
    item says which BatchNorms right after the layer would undo AdvBN (``""`` if none, see
    :func:`~advbn_aug.feature.inert.batchnorms_after`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SplitFallbackWarning)
            split = split_model(model, name, mode="auto", example_inputs=(x,))
    except (RuntimeError, ValueError) as err:
        return "none", f"{type(err).__name__}: {err}", ""
    norms = batchnorms_after(split)
    feeds_norms = describe(split, norms) if norms else ""
    split.close()
    return split.mode, split.reason or "traced by torch.fx", feeds_norms


def suggest_layers(model: nn.Module, example_inputs: torch.Tensor | None = None, *,
                   img_size: int | None = None) -> list[LayerCandidate]:
    """Candidate AdvBN layers of ``model``, input to output.

    Candidates: timm's ``feature_info`` stage outputs less the stem, else the stages of the module tree (see
    :func:`_tree_candidates`); kept when the layer ran exactly once with a 3-D ``(N, T, C)`` or 4-D output.
    ``example_inputs``: an input batch ``(N, C, H, W)``; default a seeded random batch of 2 at ``img_size`` or the
    model's input size (see :func:`default_input`).

    ``suffix_flops_fraction = (total - counted when the layer's output is ready) / total``, over one forward under
    ``torch.utils.flop_counter.FlopCounterMode``, which counts matmuls, convolutions and attention (elementwise ops
    and norms are ignored; 0 when nothing is counted). A forward hook on the layer reads the running count, so what
    the layer calls itself is prefix. The fx split runs that suffix per attack pass; the hook split runs the prefix
    too (under no_grad), so its passes cost the whole forward.
    """
    x = example_inputs if example_inputs is not None else default_input(model, img_size)
    names = _candidate_names(model)
    nhwc_model = str(getattr(model, "output_fmt", "")) == "NHWC"
    seen, total = _probe(model, x, [n for n, _, _ in names])
    out = []
    for name, index, channels in names:
        s = seen[name]
        if s.calls != 1 or len(s.shape) not in (3, 4):
            continue
        path, reason, feeds_norms = _split_path(model, name, x)
        fraction = (total - s.flops_before) / total if total else 0.0
        inert = feeds_norms if len(s.shape) == 4 and not s.nonneg else ""  # a ReLU clamp would break the cancelling
        out.append(LayerCandidate(name, index, s.shape, _layout(s.shape, channels, nhwc_model),
                                   s.nonneg, fraction, path, reason, inert))
    return out


def format_layer_table(candidates: list[LayerCandidate], reason_width: int = 60) -> str:
    """An aligned Markdown table of ``candidates``, one row each; reasons cut to ``reason_width`` characters."""
    header = ["layer", "feature_info", "output shape", "layout", "nonneg", "inert", "suffix flops", "split", "reason"]
    rows = [header]
    for c in candidates:
        reason = c.reason if len(c.reason) <= reason_width else c.reason[:reason_width - 3] + "..."
        rows.append([c.name, "-" if c.feature_info_index is None else str(c.feature_info_index),
                     "x".join(map(str, c.shape)), c.layout, "yes" if c.nonneg else "no", "yes" if c.inert else "no",
                     f"{100 * c.suffix_flops_fraction:.1f}%", c.path, reason])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
