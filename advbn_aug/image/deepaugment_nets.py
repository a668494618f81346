"""The image-to-image networks of DeepAugment (Hendrycks et al., ICCV 2021), sized for 32x32 images on a CPU.

* :class:`CAE`: a convolutional autoencoder (after Theis et al. 2017, "Lossy image compression with compressive
  autoencoders"): two stride-2 convolutions down to an 8x8 bottleneck for 32x32 input, two transposed convolutions up.
* :class:`EDSR`: an enhanced deep residual super-resolution network (Lim et al. 2017) with a x2 pixel-shuffle
  upsampler; residual blocks without BatchNorm, with residual scaling.

Both take and return RGB in ``[0, 1]``; ``(N, 3, H, W) -> (N, 3, H, W)`` for the CAE (``H, W`` multiples of 4) and
``-> (N, 3, 2H, 2W)`` for EDSR. :class:`ActivationTap` modules mark the points where DeepAugment perturbs
activations; they are identities otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["ActivationTap", "CAE", "EDSR", "DEEPAUGMENT_NETS", "build_deepaugment_net", "save_deepaugment_net",
           "load_deepaugment_net"]

_FORMAT = "advbn_aug.deepaugment/1"


class ActivationTap(nn.Identity):
    """Identity marking a perturbable activation; DeepAugment hooks it."""


class CAE(nn.Module):
    """Convolutional autoencoder ``(N, 3, H, W) -> (N, 3, H, W)`` in ``[0, 1]`` with an ``(N, latent, H/4, W/4)``
    bottleneck."""

    def __init__(self, channels: int = 32, latent: int = 16):
        super().__init__()
        self.channels, self.latent = channels, latent
        c = channels
        act = nn.LeakyReLU  # the original CAE uses LeakyReLU
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c, 3, padding=1), act(0.2), ActivationTap(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), act(0.2), ActivationTap(),
            nn.Conv2d(2 * c, 2 * c, 4, stride=2, padding=1), act(0.2), ActivationTap(),
            nn.Conv2d(2 * c, latent, 3, padding=1), nn.Tanh(), ActivationTap(),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, 2 * c, 3, padding=1), act(0.2), ActivationTap(),
            nn.ConvTranspose2d(2 * c, 2 * c, 4, stride=2, padding=1), act(0.2), ActivationTap(),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), act(0.2), ActivationTap(),
            nn.Conv2d(c, 3, 3, padding=1),
        )

    def init_kwargs(self) -> dict[str, Any]:
        return {"channels": self.channels, "latent": self.latent}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x * 2.0 - 1.0)))


class _ResBlock(nn.Module):
    def __init__(self, c: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=False), ActivationTap(),
                                  nn.Conv2d(c, c, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    """x2 super-resolution ``(N, 3, H, W) -> (N, 3, 2H, 2W)`` in ``[0, 1]`` (clamped outside training)."""

    def __init__(self, channels: int = 32, blocks: int = 4, res_scale: float = 0.1):
        super().__init__()
        self.channels, self.blocks, self.res_scale = channels, blocks, res_scale
        c = channels
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), ActivationTap())
        self.body = nn.Sequential(*[_ResBlock(c, res_scale) for _ in range(blocks)], nn.Conv2d(c, c, 3, padding=1),
                                  ActivationTap())
        self.tail = nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), ActivationTap(),
                                  nn.Conv2d(c, 3, 3, padding=1))

    def init_kwargs(self) -> dict[str, Any]:
        return {"channels": self.channels, "blocks": self.blocks, "res_scale": self.res_scale}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x - 0.5)
        out = self.tail(h + self.body(h)) + 0.5
        return out if self.training else out.clamp(0.0, 1.0)


DEEPAUGMENT_NETS: dict[str, type[nn.Module]] = {"cae": CAE, "edsr": EDSR}


def build_deepaugment_net(arch: str, **kwargs: Any) -> nn.Module:
    """``"cae"`` or ``"edsr"`` with constructor keyword arguments."""
    if arch not in DEEPAUGMENT_NETS:
        raise ValueError(f"unknown DeepAugment network {arch!r}; choose one of {sorted(DEEPAUGMENT_NETS)}")
    return DEEPAUGMENT_NETS[arch](**kwargs)


def _arch_of(net: nn.Module) -> str:
    for name, cls in DEEPAUGMENT_NETS.items():
        if type(net) is cls:
            return name
    raise TypeError(f"expected a CAE or EDSR, got {type(net).__name__}")


def save_deepaugment_net(net: nn.Module, path: str | Path) -> Path:
    """Write ``{"format", "arch", "kwargs", "state_dict"}`` to ``path`` (loadable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": _FORMAT, "arch": _arch_of(net), "kwargs": net.init_kwargs(),  # type: ignore[operator]
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}, path)
    return path


def load_deepaugment_net(path: str | Path, arch: str | None = None, map_location: str | torch.device = "cpu",
                         **kwargs: Any) -> nn.Module:
    """Load a network written by :func:`save_deepaugment_net`, or a bare ``state_dict`` given ``arch``/``kwargs``.

    Returns the network in eval mode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DeepAugment weights file {str(path)!r} not found: pass the path of a file saved by "
                                "save_deepaugment_net, or train one with `advbn-aug deepaugment train --net cae "
                                "--output cae.pt` (pretrained weights are not downloaded)")
    blob = torch.load(path, map_location=map_location, weights_only=True)
    if isinstance(blob, dict) and blob.get("format") == _FORMAT:
        net = build_deepaugment_net(arch or blob["arch"], **{**blob["kwargs"], **kwargs})
        state = blob["state_dict"]
    elif isinstance(blob, dict) and all(isinstance(v, torch.Tensor) for v in blob.values()):
        if arch is None:
            raise ValueError(f"{path} holds a bare state_dict: pass arch='cae' or arch='edsr' (and the constructor "
                             "kwargs it was built with)")
        net = build_deepaugment_net(arch, **kwargs)
        state = blob
    else:
        raise ValueError(f"{path} is not a DeepAugment weights file (expected a dict saved by save_deepaugment_net "
                         "or a state_dict)")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit {type(net).__name__}({kwargs or ''}): {err}") from err
    return net.eval()
