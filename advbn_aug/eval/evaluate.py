"""Evaluate a classifier on clean and corrupted images: :func:`evaluate_corruptions` (the API behind
``advbn-aug eval``), its configuration :class:`EvalConfig` and its result :class:`EvalResult`.

Three sources of corrupted images (``EvalConfig.source``):

- ``"generate"``: corrupt clean uint8 images (given, or a CIFAR-10 split) with :mod:`advbn_aug.eval.corruptions`;
  every (corruption, severity) set is cached on disk, keyed by its parameters and the clean images.
- ``"cifar10-c"``: the published CIFAR-10-C ``.npy`` files in ``data_dir``.
- ``"imagenet-c"``: the published ImageNet-C folder tree in ``data_dir``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advbn_aug.config import DictConfig
from advbn_aug.device import resolve_device
from advbn_aug.eval.bn_adapt import TTA_MODES, adapted_predict
from advbn_aug.eval.checkpoint import CheckpointError, read_state_dict
from advbn_aug.eval.corruptions import (
    BENCHMARK_CORRUPTIONS,
    SEVERITIES,
    check_dataset,
    check_severity,
    resolve_corruptions,
)
from advbn_aug.eval.datasets import ImageNetCFolder, corrupted_set, images_fingerprint, load_cifar10c
from advbn_aug.eval.metrics import Baseline, accuracy, load_baseline, summarize
from advbn_aug.eval.report import write_report
from advbn_aug.eval.results import EvalResult
from advbn_aug.feature.dual_norm import Route

__all__ = ["EvalConfig", "EvalResult", "evaluate_corruptions", "load_model", "predict", "prepare_batch", "iter_batches",
           "SOURCES"]

SOURCES = ("generate", "cifar10-c", "imagenet-c")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CIFAR_RESNET = re.compile(r"^(?:cifar_)?resnet(\d+)$")
_CIFAR_DEPTHS = (20, 56)


@dataclass
class EvalConfig(DictConfig):
    """Settings of one robustness evaluation; ``to_dict`` / ``from_dict`` (and YAML) round-trip through JSON types.

    ``split`` is the CIFAR-10 split used as clean images when none are given (``"test_lossless"``: the 1,000
    lossless test images of the shared data; ``"test"``: all 10,000). ``dataset`` picks the parameter table of
    generated corruptions. ``mean``/``std`` normalise [0, 1] RGB inputs. ``baseline`` is ``"alexnet"`` or the path of
    an earlier results JSON. With ``output`` set, JSON, Markdown and PNG reports are written there.
    """

    corruptions: tuple[str, ...] = BENCHMARK_CORRUPTIONS
    severities: tuple[int, ...] = SEVERITIES
    source: str = "generate"
    dataset: str = "cifar10"
    data_dir: str | None = None
    split: str = "test_lossless"
    num_images: int | None = None
    batch_size: int = 256
    seed: int = 0
    device: str | None = None
    amp: bool = True
    workers: int = 0
    mean: tuple[float, ...] = _IMAGENET_MEAN
    std: tuple[float, ...] = _IMAGENET_STD
    cache_dir: str | None = None
    use_cache: bool = True
    baseline: str | None = None
    output: str | None = None
    name: str = "model"
    progress: bool = True
    tta: str = "none"
    tta_momentum: float = 0.1

    def __post_init__(self) -> None:
        self.corruptions = resolve_corruptions(self.corruptions)
        self.severities = tuple(sorted({check_severity(s) for s in self.severities}))
        if not self.severities:
            raise ValueError("severities is empty: pass at least one of 1..5")
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}: choose one of {SOURCES}")
        check_dataset(self.dataset)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_images is not None and self.num_images < 1:
            raise ValueError(f"num_images must be >= 1 (or None for all), got {self.num_images}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"unknown test-time adaptation {self.tta!r}: choose one of {TTA_MODES}")
        if not 0 < self.tta_momentum <= 1:
            raise ValueError(f"tta_momentum must be in (0, 1], got {self.tta_momentum}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        self.mean, self.std = tuple(map(float, self.mean)), tuple(map(float, self.std))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], checkpoint: str | Path | None, name: str,
                num_classes: int) -> None:
    """``model.load_state_dict(state, strict=True)``; a mismatch raises :class:`CheckpointError` naming the file."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        parts = [f"{label} {keys[:3]}{' ...' if len(keys) > 3 else ''}" for label, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("other shapes at", shapes)) if keys]
        detail = "; ".join(parts) or str(err).splitlines()[0]
        raise CheckpointError(checkpoint, f"is not a state_dict of --model {name} with --num-classes {num_classes} "
                              f"({detail})", "pass the --model (and --num-classes) it was trained as") from None


def load_model(name: str, checkpoint: str | Path | None = None, num_classes: int = 10, *, bn: Route = "clean"
               ) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...]]:
    """Build a model and its input normalisation ``(model, mean, std)``.

    ``resnet20`` / ``resnet56`` are the CIFAR ResNets (akamaster pretrained weights unless ``checkpoint``; other
    depths as ``cifar_resnet<depth>`` need a checkpoint); any other name goes to ``timm.create_model``.
    ``checkpoint`` is a saved ``state_dict`` (or a timm checkpoint); ``bn="adv"`` loads the adversarial BatchNorm
    copies of a model saved while AdvBN was attached (:func:`advbn_aug.eval.checkpoint.read_state_dict`).
    """
    from advbn_aug.models.cifar_resnet import (
        CIFAR_RESNET_MEAN,
        CIFAR_RESNET_STD,
        cifar_resnet,
        load_pretrained_cifar_resnet,
    )

    if bn not in ("clean", "adv"):
        raise ValueError(f"bn must be 'clean' or 'adv', got {bn!r}")
    state = read_state_dict(checkpoint, bn) if checkpoint is not None else None
    if bn == "adv" and state is None:
        raise ValueError("bn='adv' needs a --checkpoint saved with its adversarial BatchNorms (a pretrained model "
                         "has none)")
    match = _CIFAR_RESNET.match(name)
    if match and (int(match.group(1)) in _CIFAR_DEPTHS or name.startswith("cifar_")):
        depth = int(match.group(1))
        if state is None:
            if num_classes != 10:
                raise ValueError(f"pretrained {name} has 10 classes, got num_classes={num_classes}: pass --checkpoint")
            return load_pretrained_cifar_resnet(depth), CIFAR_RESNET_MEAN, CIFAR_RESNET_STD
        model = cifar_resnet(depth, num_classes)
        _load_state(model, state, checkpoint, name, num_classes)
        return model, CIFAR_RESNET_MEAN, CIFAR_RESNET_STD
    import timm

    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: use resnet20, resnet56 or a timm model name (timm.list_models())")
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    if state is not None:
        _load_state(model, state, checkpoint, name, num_classes)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return model, tuple(cfg.get("mean", _IMAGENET_MEAN)), tuple(cfg.get("std", _IMAGENET_STD))


def iter_batches(source: np.ndarray | torch.utils.data.DataLoader, batch_size: int) -> Iterable[tuple[Any, Any]]:
    """``(images, labels)`` batches of ``source``: an array ``(N, H, W, 3)`` is cut into ``(batch_size, H, W, 3)``
    slices with labels ``None``; a loader's own batches pass through (its ``batch_size`` applies). The batch source
    that :func:`predict` and :func:`advbn_aug.eval.bn_adapt.adapted_predict` read."""
    if isinstance(source, np.ndarray):
        for i in range(0, len(source), batch_size):
            yield source[i:i + batch_size], None
    else:
        yield from source


def prepare_batch(xb: Any, device: torch.device, mean: Iterable[float], std: Iterable[float]) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` images -> normalised float ``(N, 3, H, W)`` on ``device``: [0, 1], then
    ``(x - mean) / std``."""
    m = torch.tensor(tuple(mean), device=device).view(1, 3, 1, 1)
    s = torch.tensor(tuple(std), device=device).view(1, 3, 1, 1)
    x = torch.as_tensor(np.asarray(xb)).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    return (x - m) / s


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray | torch.utils.data.DataLoader, *, batch_size: int = 256,
            device: str | torch.device | None = None, mean: Iterable[float] = _IMAGENET_MEAN,
            std: Iterable[float] = _IMAGENET_STD, amp: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted classes ``(N,)`` for uint8 images ``(N, H, W, 3)`` (or a loader of ``(images, labels)`` batches,
    whose labels come back second; ``None`` for arrays). Inputs go to [0, 1], then ``(x - mean) / std``; AMP
    autocast on CUDA when ``amp``."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    model.eval().to(dev)
    preds, labels = [], []
    for xb, yb in iter_batches(images, batch_size):
        x = prepare_batch(xb, dev, mean, std)
        with torch.autocast(dev.type, enabled=amp and dev.type == "cuda"):
            logits = model(x)
        preds.append(logits.argmax(1).cpu().numpy())
        if yb is not None:
            labels.append(np.asarray(yb))
    out = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    return out, (np.concatenate(labels) if labels else None)


def _clean_images(cfg: EvalConfig, images: np.ndarray | None, labels: np.ndarray | None
                  ) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    if images is not None:
        if labels is None:
            raise ValueError("images given without labels: pass labels (int array of the same length)")
        images, labels = np.asarray(images), np.asarray(labels).astype(np.int64)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}: convert first")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels: pass one label per image")
        return images, labels, None
    if cfg.source == "imagenet-c":
        return None, None, "no clean images given: clean accuracy and relative CE are not computed"
    from advbn_aug.datasets.cifar10 import load_cifar10

    root = cfg.data_dir if cfg.source == "generate" else None
    try:
        x, y = load_cifar10(cfg.split, root)
    except FileNotFoundError as err:
        if cfg.source == "generate":
            raise
        return None, None, f"clean CIFAR-10 not found ({err}); clean accuracy is not computed"
    return x, y, None


def evaluate_corruptions(model: nn.Module, images: np.ndarray | None = None, labels: np.ndarray | None = None,
                         config: EvalConfig | None = None, **overrides: Any) -> EvalResult:
    """Accuracy of ``model`` on clean images and every (corruption, severity) of ``config``.

    Args:
        model: a classifier taking normalised ``(N, 3, H, W)`` float batches.
        images, labels: clean uint8 ``(N, H, W, 3)`` images and int labels ``(N,)``; default: the CIFAR-10
            ``config.split`` (source ``"generate"``/``"cifar10-c"``). Corrupted sets are generated from them.
        config: an :class:`EvalConfig`; ``overrides`` replace its fields (``evaluate_corruptions(m, seed=1)``).

    Returns an :class:`EvalResult`; with ``config.output`` the reports are written there too.
    """
    cfg = dataclasses.replace(config or EvalConfig(), **overrides)
    if cfg.source != "generate" and cfg.data_dir is None:
        raise ValueError(f"source {cfg.source!r} needs data_dir: pass --data-dir <folder of the benchmark files>")
    device = resolve_device(cfg.device)
    baseline: Baseline | None = load_baseline(cfg.baseline) if cfg.baseline else None
    start = time.perf_counter()
    x_clean, y_clean, note = _clean_images(cfg, images, labels)
    notes = [note] if note else []
    if x_clean is not None and cfg.num_images is not None:
        x_clean, y_clean = x_clean[: cfg.num_images], y_clean[: cfg.num_images]
    run = dict(batch_size=cfg.batch_size, device=device, mean=cfg.mean, std=cfg.std, amp=cfg.amp)

    def predict_set(images: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """``predict`` under the configured test-time adaptation (each set adapts from the model's own state)."""
        model.to(device)
        return adapted_predict(predict, lambda xb: prepare_batch(xb, device, cfg.mean, cfg.std), model, images,
                               lambda imgs: iter_batches(imgs, cfg.batch_size), cfg.tta, cfg.tta_momentum, **run)

    from tqdm.auto import tqdm

    cells = [(c, s) for c in cfg.corruptions for s in cfg.severities]
    bar = tqdm(total=len(cells) + (x_clean is not None), desc=f"eval {cfg.name}", unit="set", disable=not cfg.progress)
    clean_acc = None
    if x_clean is not None:
        bar.set_postfix_str("clean")
        clean_acc = accuracy(predict_set(x_clean)[0], y_clean)
        bar.update()
    fingerprint = images_fingerprint(x_clean) if cfg.source == "generate" else None
    table: dict[str, dict[int, float]] = {}
    hits, n_images = 0, 0
    for c, s in cells:
        bar.set_postfix_str(f"{c} s{s}")
        if cfg.source == "generate":
            xs, hit = corrupted_set(x_clean, c, s, seed=cfg.seed, dataset=cfg.dataset, cache_dir=cfg.cache_dir,
                                    use_cache=cfg.use_cache, fingerprint=fingerprint)
            hits += hit
            preds, ys = predict_set(xs)[0], y_clean
        elif cfg.source == "cifar10-c":
            xs, ys = load_cifar10c(cfg.data_dir, c, s, cfg.num_images)
            preds = predict_set(xs)[0]
        else:
            folder = ImageNetCFolder(cfg.data_dir, c, s, num_images=cfg.num_images)
            loader = torch.utils.data.DataLoader(folder, batch_size=cfg.batch_size, num_workers=cfg.workers,
                                                 pin_memory=device.type == "cuda")
            preds, ys = predict_set(loader)
        table.setdefault(c, {})[s] = accuracy(preds, ys)
        n_images = max(n_images, len(preds))
        bar.update()
    bar.close()
    if baseline is not None and cfg.source != "imagenet-c" and baseline.name == "alexnet":
        notes.append("the AlexNet baseline is the published ImageNet-C table; its CE is only meaningful on ImageNet-C")
    result = EvalResult(
        name=cfg.name, clean_accuracy=clean_acc, accuracy=table, summary=summarize(table, clean_acc, baseline),
        config=cfg.to_dict(), num_images=n_images if x_clean is None else len(x_clean), cache_hits=int(hits),
        seconds=round(time.perf_counter() - start, 3), notes=notes,
    )
    if cfg.output:
        write_report(result, cfg.output, baseline)
    return result
