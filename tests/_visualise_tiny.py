"""Tiny models and images for the visualise tests (a few thousand parameters, 32 px)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from advbn_aug.visualise.decoder import DecoderArch, FeatureDecoder
from advbn_aug.visualise.inverter import FeatureInverter
from advbn_aug.visualise.source import LayerEncoder, to_tensor

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for these tiny tensors (2 threads on a loaded 2-core machine are many times slower);
    the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyNet(nn.Module):
    """stem -> layer1 (post-ReLU, stride 2) -> layer2 -> pooled linear head; ``(N, 3, S, S) -> (N, classes)``."""

    def __init__(self, classes: int = 3, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.head(x.mean((2, 3)))


def tiny_net(seed: int = 0, classes: int = 3) -> TinyNet:
    torch.manual_seed(seed)
    net = TinyNet(classes)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 ``(n, size, size, 3)``: random low-frequency colour blobs (easy to reconstruct, not constant)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def tiny_encoder(size: int = 32, seed: int = 0) -> LayerEncoder:
    return LayerEncoder(tiny_net(seed), "layer1", MEAN, STD, size)


def tiny_inverter(images: np.ndarray, seed: int = 0) -> FeatureInverter:
    """An untrained decoder (input statistics set from ``images``) on the tiny net's ``layer1``."""
    enc = tiny_encoder(images.shape[1], seed)
    c, h, _ = enc.feature_shape()
    torch.manual_seed(seed)
    dec = FeatureDecoder(DecoderArch(c, images.shape[1] // h, width=8, blocks=1))
    dec.set_feature_stats(enc(to_tensor(images)).detach())
    return FeatureInverter(enc, dec.eval(), "tiny", {"psnr": 12.5, "num_holdout": 4})
