"""``FeatureInverter``: the user's frozen prefix and a trained decoder, as one pair that encodes images to layer
features and decodes features back to images; :func:`open_inverter` rebuilds it from a decoder file and checks it
against what the user asked for (model, layer, image size)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from advbn_aug.split import resolve_layer
from advbn_aug.visualise.decoder import DecoderSource, FeatureDecoder, load_decoder
from advbn_aug.visualise.source import LayerEncoder, load_encoder

__all__ = ["FeatureInverter", "open_inverter"]


@dataclass
class FeatureInverter:
    """``encode``: RGB ``(N, 3, H, W)`` in [0, 1] -> features ``(N, C, h, w)``; ``decode``: back to RGB;
    ``classify``: the full model's logits. ``name`` labels the model in captions; ``info`` holds the decoder file's
    metrics (``psnr``, ``num_holdout``, ...)."""

    encoder: LayerEncoder
    decoder: FeatureDecoder
    name: str = "model"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c, h, _ = self.encoder.feature_shape()
        arch = self.decoder.arch
        if c != arch.in_channels or h * arch.scale != self.encoder.img_size:
            raise ValueError(f"the decoder takes {arch.in_channels}-channel features at 1/{arch.scale} of the image "
                             f"side, but layer {self.encoder.layer!r} gives {c} channels at {h} px for "
                             f"{self.encoder.img_size} px images: use the decoder trained for this model and layer "
                             "(advbn-aug visualise train-decoder --model ... --layer ...)")

    @property
    def layer(self) -> str:
        return self.encoder.layer

    @property
    def img_size(self) -> int:
        return self.encoder.img_size

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    @torch.no_grad()
    def decode(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(features)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.classify(x)


def _mismatch(what: str, asked: Any, trained: Any, flag: str) -> ValueError:
    return ValueError(f"{what} {asked!r} was asked for, but the decoder was trained for {trained!r}: drop {flag} to "
                      f"use the decoder's, or train a decoder for {asked!r} (advbn-aug visualise train-decoder "
                      f"{flag} {asked})")


def open_inverter(decoder_path: str, *, model: str | None = None, layer: str | int | None = None,
                  img_size: int | None = None, checkpoint: str | None = None, device: str = "cpu"
                  ) -> tuple[FeatureInverter, DecoderSource]:
    """The inverter of decoder file ``decoder_path``; ``model``/``layer``/``img_size`` must match the decoder's
    (``None``: the decoder's). ``checkpoint`` replaces the decoder's model checkpoint (same architecture)."""
    decoder, source, info = load_decoder(decoder_path, device)
    if model is not None and model != source.model:
        raise _mismatch("model", model, source.model, "--model")
    if img_size is not None and img_size != source.img_size:
        raise _mismatch("image size", img_size, source.img_size, "--img-size")
    encoder = load_encoder(source.model, checkpoint or source.checkpoint, source.layer, source.img_size,
                           num_classes=source.num_classes, device=device)
    if layer is not None and resolve_layer(encoder.model, layer) != source.layer:  # a wrong name lists candidates
        raise _mismatch("layer", str(layer), source.layer, "--layer")
    return FeatureInverter(encoder, decoder, source.model, info), source
