"""Options of the feature-inversion tools, each declared once with its help text.

:class:`SourceConfig` says which model, layer and images; :class:`DecoderConfig` adds the decoder training,
:class:`GridConfig` the image grid, :class:`TestsetConfig` the adversarial-style test set. The
``advbn-aug visualise`` flags are derived from these fields (:mod:`advbn_aug.config`, no prefix: ``--model``,
``--layer``, ``--batch-size``, ... as in timm's scripts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from advbn_aug.config import DictConfig

__all__ = ["SourceConfig", "DecoderConfig", "GridConfig", "TestsetConfig", "ImageSource", "TestsetVariant"]

ImageSource = Literal["cifar10", "folder"]
TestsetVariant = Literal["advbn", "adain", "reconstruct"]
StatsLevel = Literal["batch", "instance"]


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass
class SourceConfig(DictConfig):
    """The model whose frozen prefix is inverted, the layer, and where the images come from."""

    model: str | None = _opt(None, "resnet20 / resnet56 (CIFAR ResNets, pretrained unless --checkpoint) or a timm "
                                   "model name; train-decoder: resnet20 when not given, grid / make-testset: the "
                                   "decoder's model", metavar="NAME")
    checkpoint: str | None = _opt(None, "state_dict file of the model (default: the pretrained CIFAR ResNet; grid / "
                                        "make-testset: the decoder's)", metavar="PATH")
    num_classes: int = _opt(10, "classes of the model head", metavar="N")
    layer: str | None = _opt(None, "module name (layer1, stages.0) or timm feature_info index whose output is "
                                   "inverted; train-decoder: layer1 when not given, grid / make-testset: the "
                                   "decoder's layer", metavar="NAME")
    dataset: ImageSource = _opt("cifar10", "'cifar10' (shared CIFAR-10, 32 px) or 'folder' (an image folder given "
                                           "by --data-dir; class subfolders give the labels, sorted)")
    data_dir: str | None = _opt(None, "cifar10: folder of the CIFAR-10 files (default: the shared data); folder: the "
                                      "image folder", metavar="DIR")
    img_size: int | None = _opt(None, "image side in pixels (cifar10: 32; folder: resized and centre-cropped to it, "
                                      "default 64; grid / make-testset: the decoder's)", metavar="PX")
    device: str = _opt("cpu", "torch device (cpu, cuda)", metavar="DEV")
    threads: int | None = _opt(None, "torch.set_num_threads (default: torch's choice)", metavar="N")
    seed: int = _opt(0, "random seed (image order, MixStyle/DSU draws, AdaIN partners)", metavar="N")
    progress: bool = _opt(True, "show a tqdm progress bar")

    def __post_init__(self) -> None:
        if self.dataset not in ("cifar10", "folder"):
            raise ValueError(f"dataset must be 'cifar10' or 'folder', got {self.dataset!r}")
        if self.dataset == "folder" and not self.data_dir:
            raise ValueError("dataset 'folder' needs the image folder: pass --data-dir DIR")
        if self.dataset == "cifar10" and self.img_size not in (None, 32):
            raise ValueError(f"CIFAR-10 images are 32 px, got img_size={self.img_size}: drop --img-size, or use "
                             "--dataset folder for images of another size")
        _positive("img_size", self.img_size, allow_none=True)
        _positive("threads", self.threads, allow_none=True)
        _positive("num_classes", self.num_classes)


@dataclass
class DecoderConfig(SourceConfig):
    """Training of a decoder from the layer's features back to images (``advbn-aug visualise train-decoder``)."""

    output: str = _opt("runs/visualise/decoder", "folder of decoder.pt, last.pt (resumable state) and metrics.json",
                       metavar="DIR")
    epochs: int = _opt(5, "passes over the training images", metavar="N")
    batch_size: int = _opt(64, "images per step", metavar="N")
    lr: float = _opt(2e-3, "Adam learning rate (cosine decay to 5% of it)", metavar="LR")
    train_images: int | None = _opt(6000, "training images (a seeded random subset; none: all)", metavar="N")
    holdout_images: int = _opt(500, "held-out images for the PSNR (cifar10: the first N lossless test images; "
                                    "folder: N images left out of training)", metavar="N")
    width: int = _opt(48, "decoder channels at the feature resolution", metavar="C")
    blocks: int = _opt(2, "residual blocks at the feature resolution", metavar="N")
    perceptual_weight: float = _opt(0.1, "weight of the perceptual term: squared error between the model's own "
                                         "features of the reconstruction and of the input at the layer, relative to "
                                         "the features' mean square (0: pixel loss only)", metavar="W")
    save_every: int = _opt(50, "write the resumable state every N steps (and at each epoch end)", metavar="N")
    resume: bool = _opt(True, "continue from <output>/last.pt when it was written with the same settings")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("epochs", "batch_size", "holdout_images", "width", "blocks", "save_every"):
            _positive(name, getattr(self, name))
        _positive("train_images", self.train_images, allow_none=True)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.perceptual_weight >= 0:
            raise ValueError(f"perceptual_weight must be >= 0, got {self.perceptual_weight}")


@dataclass
class _DecodedConfig(SourceConfig):
    """What the grid and the test set share: the trained decoder and the images to decode."""

    decoder: str = _opt("runs/visualise/decoder/decoder.pt", "decoder file written by train-decoder", metavar="PATH")
    split: str = _opt("test_lossless", "CIFAR-10 split of the images (test_lossless: 1,000 lossless test images; "
                                       "test; train); ignored for a folder", metavar="SPLIT")
    step_size: float = _opt(0.2, "AdvBN PGD sign-step size on the multipliers", metavar="S")
    clamp_min: float | None = _opt(0.0, "lower clamp of perturbed features when the layer output is non-negative "
                                        "(post-ReLU, as AdvBN's clamp_min='auto'); signed outputs are never clamped; "
                                        "'none' disables it", metavar="V")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split not in ("test_lossless", "test", "train"):
            raise ValueError(f"split must be 'test_lossless', 'test' or 'train', got {self.split!r}")
        if not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}")


@dataclass
class GridConfig(_DecodedConfig):
    """Image grid of reconstructions under feature perturbations and real shifts (``visualise grid``)."""

    output: str = _opt("runs/visualise/grid", "folder of grid.png, rows/*.png, index.html and grid.json",
                       metavar="DIR")
    num_images: int = _opt(8, "images per row (the first N of the split or folder)", metavar="N")
    eps: tuple[float, ...] = _opt((0.5, 1.1), "AdvBN multiplier boxes [1 - eps, 1 + eps], one row each (x steps)",
                                  metavar="EPS")
    steps: tuple[int, ...] = _opt((3, 6), "AdvBN PGD step counts, one row each (x eps)", metavar="N")
    ft_checkpoint: str | None = _opt(None, "a second checkpoint of the same model (e.g. AdvBN fine-tuned): its AdvBN "
                                           "rows follow the reference model's", metavar="PATH")
    mixstyle_alpha: float = _opt(0.1, "Beta(alpha, alpha) of the MixStyle row", metavar="A")
    corruption: str = _opt("fog", "corruption of the real-shift rows (advbn_aug.eval.corruptions name)",
                           metavar="NAME")
    severity: int = _opt(3, "its severity (1..5)", metavar="S")
    style_image: str | None = _opt(None, "image file whose statistics at the layer restyle every input (AdaIN row); "
                                         "default: the image after the last grid image", metavar="PATH")
    tile_size: int = _opt(64, "pixel side of each tile in the PNGs (nearest-neighbour upscaling)", metavar="PX")

    def __post_init__(self) -> None:
        super().__post_init__()
        from advbn_aug.eval.corruptions import check_severity, resolve_corruptions

        _positive("num_images", self.num_images)
        _positive("tile_size", self.tile_size)
        self.eps, self.steps = tuple(float(e) for e in self.eps), tuple(self.steps)
        if not self.eps or any(not e >= 0 for e in self.eps):
            raise ValueError(f"eps must be one or more numbers >= 0, got {list(self.eps)}")
        if not self.steps or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in self.steps):
            raise ValueError(f"steps must be one or more integers >= 0, got {list(self.steps)}")
        if not self.mixstyle_alpha > 0:
            raise ValueError(f"mixstyle_alpha must be > 0, got {self.mixstyle_alpha}")
        names = resolve_corruptions([self.corruption])
        if len(names) != 1:
            raise ValueError(f"corruption must be one name, got the group {self.corruption!r}")
        self.corruption, self.severity = names[0], check_severity(self.severity)


@dataclass
class TestsetConfig(_DecodedConfig):
    """An adversarial-style copy of a test set (``visualise make-testset``)."""

    __test__ = False  # not a pytest class

    output: str = _opt("runs/visualise/testset", "folder of test_lossless1000.npz (uint8 x, int64 y: what "
                                                 "`advbn-aug eval --data-dir DIR --split test_lossless` reads) and "
                                                 "meta.json", metavar="DIR")
    variant: TestsetVariant = _opt("advbn", "'advbn': AdvBN-perturbed features attacked against the model; 'adain': "
                                            "each image's channel statistics swapped for another image's; "
                                            "'reconstruct': plain reconstructions (the decoder-only control)")
    num_images: int | None = _opt(None, "images (the first N of the split or folder; none: all)", metavar="N")
    batch_size: int = _opt(100, "images per attack batch (AdvBN's batch statistics and multipliers)", metavar="N")
    eps: float = _opt(1.1, "AdvBN multipliers stay in [1 - eps, 1 + eps]", metavar="EPS")
    steps: int = _opt(6, "AdvBN PGD steps", metavar="N")
    stats: StatsLevel = _opt("batch", "AdvBN 'batch': one (m, s) per channel for the batch (the paper); "
                                      "'instance': one per image")

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("num_images", self.num_images, allow_none=True)
        _positive("batch_size", self.batch_size)
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if self.variant not in ("advbn", "adain", "reconstruct"):
            raise ValueError(f"variant must be 'advbn', 'adain' or 'reconstruct', got {self.variant!r}")
        if self.stats not in ("batch", "instance"):
            raise ValueError(f"stats must be 'batch' or 'instance', got {self.stats!r}")
