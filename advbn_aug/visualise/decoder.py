"""``FeatureDecoder``: a small convolutional decoder from a layer's feature map back to RGB images, and its file.

The decoder file (``decoder.pt``, written by :func:`~advbn_aug.visualise.train.train_decoder`) holds the weights,
the architecture and the source it inverts (model, checkpoint, layer, image size, input normalisation), so the grid
and test-set tools rebuild everything from it and refuse a model, layer or image size it was not trained for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["FeatureDecoder", "DecoderArch", "DecoderSource", "save_decoder", "load_decoder", "decoder_arch_for"]


@dataclass(frozen=True)
class DecoderArch:
    """Shape of a decoder: ``in_channels`` of the feature, ``scale`` = image side / feature side (a power of 2),
    ``width`` channels and ``blocks`` residual blocks at the feature resolution."""

    in_channels: int
    scale: int
    width: int = 48
    blocks: int = 2


@dataclass(frozen=True)
class DecoderSource:
    """What a decoder inverts: ``layer`` of ``model`` (with ``checkpoint``; ``None``: pretrained) at ``img_size`` px,
    inputs normalised with ``mean``/``std``."""

    model: str
    checkpoint: str | None
    layer: str
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int = 10
    dataset: str = "cifar10"


def decoder_arch_for(feature_shape: tuple[int, int, int], img_size: int, *, width: int = 48, blocks: int = 2,
                     layer: str = "the layer") -> DecoderArch:
    """The architecture for features ``(C, h, w)`` of ``img_size`` px images; raises when the ratio is not a power
    of 2."""
    c, h, w = feature_shape
    scale = img_size // h if h else 0
    if h != w or scale < 1 or scale * h != img_size or scale & (scale - 1):
        raise ValueError(f"{layer} gives {h}x{w} features for {img_size} px images; the decoder upsamples square maps "
                         "by powers of 2: use square images whose side is a power-of-2 multiple of the feature side "
                         "(e.g. --img-size 64 or 128 for a timm ResNet), or another layer")
    return DecoderArch(c, scale, width, blocks)


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class FeatureDecoder(nn.Module):
    """``(N, C, h, w)`` layer features -> ``(N, 3, h * scale, w * scale)`` RGB in [0, 1].

    Features are first standardised per channel with fixed statistics (``feature_mean``/``feature_std`` buffers,
    set once from training features by :meth:`set_feature_stats`), so perturbed statistics reach the decoder as
    shifts it can render. Then a 3x3 stem, ``blocks`` residual blocks, ``log2(scale)`` nearest-neighbour x2
    upsamplings with a 3x3 convolution each (channels halve, at least 16) and a sigmoid RGB head.
    """

    def __init__(self, arch: DecoderArch):
        super().__init__()
        if arch.scale < 1 or arch.scale & (arch.scale - 1):
            raise ValueError(f"scale must be a power of 2, got {arch.scale}")
        self.arch = arch
        w = arch.width
        self.register_buffer("feature_mean", torch.zeros(1, arch.in_channels, 1, 1))
        self.register_buffer("feature_std", torch.ones(1, arch.in_channels, 1, 1))
        layers: list[nn.Module] = [nn.Conv2d(arch.in_channels, w, 3, padding=1), nn.ReLU(inplace=True)]
        layers += [_Residual(w) for _ in range(arch.blocks)]
        for _ in range(int(math.log2(arch.scale))):
            out = max(16, w // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, out, 3, padding=1),
                       nn.ReLU(inplace=True)]
            w = out
        layers.append(nn.Conv2d(w, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    @torch.no_grad()
    def set_feature_stats(self, features: torch.Tensor) -> None:
        """Fix the input standardisation from features ``(N, C, h, w)`` (per-channel mean and std over N, h, w)."""
        var, mean = torch.var_mean(features.float(), dim=(0, 2, 3), keepdim=True)
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(var.add(1e-5).sqrt())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 4 or features.shape[1] != self.arch.in_channels:
            raise ValueError(f"the decoder takes (N, {self.arch.in_channels}, h, w) features, got "
                             f"{tuple(features.shape)}: it was trained for another layer or model")
        x = (features.float() - self.feature_mean) / self.feature_std
        return torch.sigmoid(self.body(x))


def save_decoder(path: str | Path, decoder: FeatureDecoder, source: DecoderSource, **extra: Any) -> Path:
    """Write ``decoder`` with its architecture, source and ``extra`` entries (metrics) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"format": "advbn_aug.feature_decoder/1", "state_dict": decoder.state_dict(),
                "arch": asdict(decoder.arch), "source": asdict(source), **extra}, tmp)
    tmp.replace(path)
    return path


def load_decoder(path: str | Path, device: str | torch.device = "cpu"
                 ) -> tuple[FeatureDecoder, DecoderSource, dict[str, Any]]:
    """Read a decoder file: ``(decoder in eval mode, its source, the other entries such as 'psnr')``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"decoder file {path} does not exist: train one first with `advbn-aug visualise "
                                "train-decoder --output <dir>` and pass --decoder <dir>/decoder.pt")
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != "advbn_aug.feature_decoder/1":
        raise ValueError(f"{path} is not a decoder file written by `advbn-aug visualise train-decoder` (last.pt is "
                         "the resumable training state: pass decoder.pt)")
    src = dict(ck["source"])
    src["mean"], src["std"] = tuple(src["mean"]), tuple(src["std"])
    decoder = FeatureDecoder(DecoderArch(**ck["arch"]))
    decoder.load_state_dict(ck["state_dict"])
    extra = {k: v for k, v in ck.items() if k not in ("format", "state_dict", "arch", "source")}
    return decoder.to(device).eval(), DecoderSource(**src), extra
