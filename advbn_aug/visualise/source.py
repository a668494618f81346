"""Where the decoder's inputs come from: the user's model cut at a layer (:class:`LayerEncoder`) and the images
(CIFAR-10 or an image folder) as uint8 arrays ``(N, H, W, 3)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advbn_aug.split import resolve_layer

__all__ = ["LayerEncoder", "load_encoder", "load_images", "read_image_folder", "read_image", "to_tensor",
           "to_uint8", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")


class _Stop(Exception):
    """Raised by the tap right after the layer ran: nothing downstream is computed."""


class LayerEncoder:
    """The frozen prefix of ``model`` up to ``layer``: RGB ``(N, 3, H, W)`` in [0, 1] -> the layer output
    ``(N, C, h, w)``.

    The model is put in eval mode and its parameters are frozen (gradients still flow to the input, for the
    perceptual loss). Inputs are normalised with ``mean``/``std``; the forward stops right after the layer, so any
    model works (no tracing). ``img_size`` is the side of the images the encoder is used with.
    """

    def __init__(self, model: nn.Module, layer: str | int, mean: tuple[float, ...], std: tuple[float, ...],
                 img_size: int):
        self.layer = resolve_layer(model, layer)  # ValueError listing candidates for a wrong name
        self.model = model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.mean, self.std, self.img_size = tuple(mean), tuple(std), int(img_size)
        self._out: torch.Tensor | None = None
        self._shape: tuple[int, int, int] | None = None

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [0, 1] -> the model's input ``(x - mean) / std``."""
        m = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        s = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - m) / s

    def _tap(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._out = output
        raise _Stop

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The layer output for RGB ``x`` ``(N, 3, H, W)`` in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"the encoder takes RGB batches (N, 3, H, W), got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"images are {x.shape[-2]}x{x.shape[-1]} px but this encoder (and its decoder) works at "
                             f"{self.img_size} px: resize the images or pass --img-size {x.shape[-1]} and train a "
                             "decoder for that size")
        handle = self.model.get_submodule(self.layer).register_forward_hook(self._tap)
        try:
            self.model(self.normalise(x))
        except _Stop:
            pass
        finally:
            handle.remove()
        out, self._out = self._out, None
        if out is None:
            raise RuntimeError(f"layer {self.layer!r} did not run in the forward of {type(self.model).__name__}: "
                               "pick a layer on the path from input to output")
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"layer {self.layer!r} outputs {shape}; the decoder inverts (N, C, H, W) feature maps: "
                             "pick a convolutional stage (e.g. layer1, stages.0)")
        return out

    def feature_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of the layer output at ``img_size`` (one forward of a blank image, cached)."""
        if self._shape is None:
            device = next(iter(self.model.parameters()), torch.zeros(())).device
            with torch.no_grad():
                f = self(torch.zeros(1, 3, self.img_size, self.img_size, device=device))
            self._shape = (int(f.shape[1]), int(f.shape[2]), int(f.shape[3]))
        return self._shape

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The full model's logits for RGB ``x`` in [0, 1] (no grad)."""
        with torch.no_grad():
            return self.model(self.normalise(x))

    def to(self, device: str | torch.device) -> LayerEncoder:
        self.model.to(device)
        return self


def load_encoder(model: str, checkpoint: str | None, layer: str | int, img_size: int, *, num_classes: int = 10,
                 device: str = "cpu") -> LayerEncoder:
    """Build the model (as ``advbn-aug eval`` does: CIFAR ResNets or timm names) and cut it at ``layer``."""
    from advbn_aug.eval.evaluate import load_model

    net, mean, std = load_model(model, checkpoint, num_classes)
    return LayerEncoder(net, layer, mean, std, img_size).to(device)


def read_image(path: str | Path, size: int) -> np.ndarray:
    """One image file as uint8 ``(size, size, 3)``: shorter side resized to ``size``, centre-cropped."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist: pass the path of an image file")
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def read_image_folder(root: str | Path, size: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images under ``root`` (recursively, sorted) as uint8 ``(N, size, size, 3)`` and int64 labels ``(N,)``.

    Labels follow torchvision's ``ImageFolder``: the index of the top-level subfolder in sorted order; images directly
    in ``root`` get label 0 when there are no class subfolders. ``limit`` keeps the first N files.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist: pass --data-dir <folder of images>")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}: pass a folder of images")
    classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    index = {c: i for i, c in enumerate(classes)}
    files = files[:limit] if limit is not None else files
    x = np.stack([read_image(p, size) for p in files])
    y = np.array([index.get(p.relative_to(root).parts[0], 0) for p in files], dtype=np.int64)
    return x, y


def load_images(dataset: str, data_dir: str | None, split: str, img_size: int, limit: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(N, img_size, img_size, 3)`` images and int64 labels from CIFAR-10 (``split``) or an image folder."""
    if dataset == "folder":
        if data_dir is None:
            raise ValueError("dataset 'folder' needs the image folder: pass --data-dir DIR")
        return read_image_folder(data_dir, img_size, limit)
    if dataset != "cifar10":
        raise ValueError(f"dataset must be 'cifar10' or 'folder', got {dataset!r}")
    if img_size != 32:
        raise ValueError(f"CIFAR-10 images are 32 px but the decoder works at {img_size} px: use --dataset folder "
                         "with images of that size, or a decoder trained on CIFAR-10")
    from advbn_aug.datasets.cifar10 import load_cifar10

    x, y = load_cifar10(split, data_dir)
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


def to_tensor(x: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float ``(N, 3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``(N, 3, H, W)`` in [0, 1] -> uint8 ``(N, H, W, 3)`` (rounded, clipped)."""
    return (x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
