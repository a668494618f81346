"""CIFAR ResNets (He et al. 2016, section 4.2) with the option-A shortcut.

The architecture that the pretrained weights in ``../shared/data/weights`` (akamaster/pytorch_resnet_cifar10,
BSD-2-Clause) expect: 3x3 stem with 16 channels and no max-pool, three stages of ``n`` BasicBlocks with 16, 32, 64
channels, parameter-free shortcuts (subsample + zero-pad channels), global average pooling and a linear head.
Inputs are RGB in [0, 1] normalised with the ImageNet mean and std (:data:`CIFAR_RESNET_MEAN`, ``..._STD``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CifarResNet", "cifar_resnet", "load_pretrained_cifar_resnet", "pretrained_keys", "CIFAR_RESNET_MEAN",
           "CIFAR_RESNET_STD"]

CIFAR_RESNET_MEAN = (0.485, 0.456, 0.406)
CIFAR_RESNET_STD = (0.229, 0.224, 0.225)
_WEIGHT_FILES = {20: "resnet20-12fca82f.th", 56: "resnet56-4bfd9763.th"}


class _ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad ``pad`` channels on each side. No parameters."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU. ``(N, in_planes, H, W) -> (N, planes, H/s, W/s)``."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _ShortcutA(planes // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth ``6n + 2``. ``(N, 3, 32, 32) -> (N, num_classes)``."""

    def __init__(self, depth: int = 20, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=False)
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.linear(x)


def cifar_resnet(depth: int = 20, num_classes: int = 10) -> CifarResNet:
    """Build an untrained CIFAR ResNet (``depth`` in 20, 32, 44, 56, 110, ...)."""
    return CifarResNet(depth, num_classes)


def _default_weights(depth: int) -> Path:
    from advbn_aug.datasets.cifar10 import shared_data_dir

    if depth not in _WEIGHT_FILES:
        raise ValueError(f"no pretrained weights known for ResNet-{depth}; known depths: {sorted(_WEIGHT_FILES)}")
    root = shared_data_dir()
    if root is None:
        raise FileNotFoundError(
            f"pretrained ResNet-{depth} weights not found: pass path=... (the akamaster file "
            f"{_WEIGHT_FILES[depth]}) or place the shared data folder at ../shared/data or $ADVBN_DATA"
        )
    return root / "weights" / _WEIGHT_FILES[depth]


def load_pretrained_cifar_resnet(depth: int = 20, path: str | Path | None = None) -> CifarResNet:
    """ResNet-``depth`` with the akamaster pretrained weights (strict load, ``module.`` prefix stripped).

    ``path`` defaults to ``<shared data>/weights/resnet{depth}-*.th``.
    """
    path = Path(path) if path is not None else _default_weights(depth)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist: pass the path of resnet{depth}-*.th")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = CifarResNet(depth)
    model.load_state_dict(state, strict=True)
    return model


def pretrained_keys(depth: int = 20) -> list[str]:
    """The keys of the pretrained ResNet-``depth`` weights file (``module.`` stripped), in file order."""
    ckpt = torch.load(_default_weights(depth), map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt)
    return [k.removeprefix("module.") for k in state]
