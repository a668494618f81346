"""``advbn-aug layers MODEL``: build a timm or torchvision model with random weights and print the candidate AdvBN
layers (:func:`advbn_aug.feature.survey.suggest_layers`)."""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from torch import nn

from advbn_aug.config import ConfigArgumentError
from advbn_aug.feature.survey import default_input, format_layer_table, suggest_layers

__all__ = ["add_arguments", "run"]


def _build_model(name: str, num_classes: int, img_size: int | None) -> tuple[nn.Module, str]:
    """A randomly initialised timm model (tried first; with ``img_size`` when its constructor takes one) or
    torchvision classification model; ``ConfigArgumentError`` naming close names for an unknown one."""
    import timm
    import torchvision

    if timm.is_model(name):
        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": num_classes}
        if img_size is not None:
            try:
                return timm.create_model(name, img_size=img_size, **kwargs), "timm"
            except TypeError:  # the model has no img_size argument (CNNs take any size)
                pass
        return timm.create_model(name, **kwargs), "timm"
    tv_names = torchvision.models.list_models(module=torchvision.models)
    if name in tv_names:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes), "torchvision"
    close = difflib.get_close_matches(name, list(dict.fromkeys(timm.list_models() + tv_names)), n=5, cutoff=0.6)
    hint = f"Did you mean {', '.join(close)}? " if close else ""
    raise ConfigArgumentError(f"unknown model {name!r}: it is neither a timm model nor a torchvision classification "
                              f"model. {hint}List the names with timm.list_models('*{name[:4]}*') or "
                              "torchvision.models.list_models(module=torchvision.models)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``layers`` arguments (timm-style flag names)."""
    parser.add_argument("model", metavar="MODEL", help="timm model name (tried first) or torchvision classification "
                                                       "model name; built with random weights")
    parser.add_argument("--img-size", type=int, default=None,
                        help="input height and width (default: the model's input size, else 224)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classes of the model head (default 1000)")


def run(args: argparse.Namespace) -> int:
    """Build the model, survey its layers and print the table."""
    model, source = _build_model(args.model, args.num_classes, args.img_size)
    x = default_input(model, args.img_size)
    candidates = suggest_layers(model, x)
    print(f"{args.model} ({source}), input {tuple(x.shape)}: {len(candidates)} candidate AdvBN layers\n")
    print(format_layer_table(candidates))
    print("\nsuffix flops: share of the forward's matmul/conv/attention flops after the layer; the attack runs that "
          "part\nabout 7 times per training step (6 steps + the adversarial pass; the hook split runs the whole "
          "model).\nnonneg: the output is >= 0, so the ReLU clamp applies (clamp_min='auto' decides the same).\n"
          "inert: the output goes only into BatchNorms, which undo AdvBN's perturbation (AdvBN refuses the layer).")
    for c in candidates:
        if c.inert:
            print(f"\n{c.name} is inert: {c.inert}.")
    return 0
