"""The PACS recipe's data and model: the decoded image arrays of one task, EfficientNet-Lite0 with its frozen
prefix and exported keys, and the training-time random resized crop + flip."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from advbn_aug.recipe.core.data import class_balanced_subset
from advbn_aug.recipe.pacs.config import PACSConfig, pacs_prefix_names

__all__ = ["PACSData", "load_pacs_model", "load_pacs_export", "pacs_prefix_modules", "random_resized_crop_flip",
           "augment", "PACS_MEAN", "PACS_STD"]

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)

PACS_MEAN = PACS_STD = (0.5, 0.5, 0.5)  # the Lite checkpoints' input normalisation


def _decode(ds, keep: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``keep`` of a PACS dataset as uint8 ``(n, size, size, 3)`` and their labels."""
    from PIL import Image

    x = np.empty((len(keep), size, size, 3), np.uint8)
    for j, i in enumerate(keep):
        im = ds.load_image(int(i))
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        x[j] = np.asarray(im)
    return x, np.asarray(ds.targets, dtype=np.int64)[keep]


def _pick(targets: list[int], n: int | None) -> np.ndarray:
    """Indices of a fixed class-balanced subset of ``n`` (all, in order, when ``None``)."""
    y = np.asarray(targets, dtype=np.int64)
    if n is None or n >= len(y):
        return np.arange(len(y))
    return np.sort(class_balanced_subset(np.arange(len(y)), y, n, seed=0)[0])


class PACSData:
    """The arrays one task needs, decoded once: ``train_x``/``train_y`` (shuffled, fixed), ``tests`` (``{domain:
    (x, y)}``, every image of each target unless ``test_images``) and, for leave-one-out, ``val`` (the sources'
    official crossval lists; reported, not used to select anything)."""

    def __init__(self, cfg: PACSConfig, data_dir: str | Path | None):
        from advbn_aug.datasets.pacs import PACS_DOMAINS, PACSDomain, resolve_pacs_root

        root = resolve_pacs_root(data_dir)
        self.data_dir = data_dir
        if cfg.protocol == "single_source":
            parts = [PACSDomain(cfg.domain, "all", root)]
            val_parts: list = []
        else:
            sources = [d for d in PACS_DOMAINS if d != cfg.domain]
            parts = [PACSDomain(d, "train", root) for d in sources]
            val_parts = [PACSDomain(d, "crossval", root) for d in sources]
        owners = np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)])
        local = np.concatenate([np.arange(len(p)) for p in parts])
        chosen = _pick([t for p in parts for t in p.targets], cfg.train_subset)
        xs, ys = zip(*(_decode(p, local[chosen][owners[chosen] == k], cfg.img_size) for k, p in enumerate(parts)))
        x, y = np.concatenate(xs), np.concatenate(ys)
        perm = np.random.default_rng(0).permutation(len(x))
        self.train_x, self.train_y = np.ascontiguousarray(x[perm]), y[perm]
        self.tests: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for d in cfg.targets():
            ds = PACSDomain(d, "all", root)
            self.tests[d] = _decode(ds, _pick(ds.targets, cfg.test_images), cfg.img_size)
        self.val: tuple[np.ndarray, np.ndarray] | None = None
        if val_parts:
            vx, vy = zip(*(_decode(p, _pick(p.targets, cfg.test_images), cfg.img_size) for p in val_parts))
            self.val = np.concatenate(vx), np.concatenate(vy)

    def describe(self) -> str:
        tests = ", ".join(f"{d} {len(y)}" for d, (_, y) in self.tests.items())
        val = "" if self.val is None else f"; source crossval {len(self.val[1])}"
        return f"data: {len(self.train_x)} training images; test images {tests}{val}"


def load_pacs_model(cfg: PACSConfig) -> tuple[nn.Module, list[str]]:
    """EfficientNet-Lite0 with the ImageNet weights and a fresh 7-class head (initialised from seed 0), and the keys
    its export keeps."""
    from advbn_aug.datasets.pacs import PACS_CLASSES
    from advbn_aug.models.efficientnet_lite import load_efficientnet_lite

    with torch.random.fork_rng():  # the same fresh head in every arm and seed, whatever the RNG state
        torch.manual_seed(0)
        model = load_efficientnet_lite("lite0", num_classes=len(PACS_CLASSES))
    return model, list(model.state_dict())


def load_pacs_export(cfg: PACSConfig, path: str | Path) -> nn.Module:
    """An exported ``model.pt`` / ``model_adv.pt`` loaded (strictly) into a fresh EfficientNet-Lite0, in eval mode."""
    import timm

    from advbn_aug.datasets.pacs import PACS_CLASSES
    from advbn_aug.eval.checkpoint import CheckpointError, load_checkpoint_file

    model = timm.create_model(cfg.model, pretrained=False, num_classes=len(PACS_CLASSES))
    state = load_checkpoint_file(path)
    if not isinstance(state, dict):
        raise CheckpointError(path, f"holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(path, f"is not a state_dict of {cfg.model} ({' '.join(str(err).split())[:200]})") \
            from err
    return model.eval()


def pacs_prefix_modules(model: nn.Module, cfg: PACSConfig) -> list[nn.Module]:
    return [model.get_submodule(name) for name in pacs_prefix_names(cfg.advbn.get("layer", "blocks.1"))]


def random_resized_crop_flip(x: torch.Tensor, scale: tuple[float, float] = (0.7, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Per-image random resized crop (area fraction in ``scale``, aspect ratio in ``ratio``, resized back to the
    input size, bilinear) and horizontal flip, batched with one ``grid_sample``; draws from torch's global RNG."""
    n = x.shape[0]
    area = torch.empty(n).uniform_(*scale)
    log_r = torch.empty(n).uniform_(float(np.log(ratio[0])), float(np.log(ratio[1])))
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width / height as fractions of the image
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n) * 2 - 1) * (1 - w)  # crop centre in [-1, 1] coordinates, inside the image
    cy = (torch.rand(n) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = torch.nn.functional.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment(x: torch.Tensor, cfg: PACSConfig) -> torch.Tensor:
    """The training-time augmentation of a float NCHW batch in [0, 1]: :func:`random_resized_crop_flip` with the
    config's ``crop_scale`` (looked up when called, so a test can replace it)."""
    return random_resized_crop_flip(x, tuple(cfg.crop_scale))
