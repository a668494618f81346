"""``make_testset``: an adversarial-style copy of a test set (the paper's ImageNet-AdvBN, at this project's scale).

Every image goes through the frozen prefix; its features are shifted and decoded back to an image:

* ``advbn``: the AdvBN worst case against the reference model (batch by batch: batch-shared multipliers, or one
  per image with ``stats="instance"``);
* ``adain``: each image's channel statistics replaced by those of another image of the set (a seeded
  permutation without fixed points): style transfer in feature space;
* ``reconstruct``: no shift (the control: what decoding alone costs in accuracy).

The set is written as ``<output>/test_lossless1000.npz`` (uint8 ``x`` ``(N, H, W, 3)``, int64 ``y``), the file name
that ``advbn-aug eval --data-dir <output> --split test_lossless`` reads (whatever N is), plus ``meta.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advbn_aug.visualise.config import TestsetConfig
from advbn_aug.visualise.inverter import FeatureInverter, open_inverter
from advbn_aug.visualise.shifts import SuffixModel, adain, advbn_shift
from advbn_aug.visualise.source import load_images, to_tensor, to_uint8

__all__ = ["TestsetResult", "make_testset", "TESTSET_FILE", "partners"]

_log = logging.getLogger("advbn_aug")
TESTSET_FILE = "test_lossless1000.npz"  # the name eval's --split test_lossless reads from --data-dir


@dataclass
class TestsetResult:
    """The decoded images ``x`` (uint8 ``(N, H, W, 3)``) and labels ``y``; the reference model's correct counts on
    the source images, on the shifted features (``None`` for adain / reconstruct) and on the decoded images."""

    __test__ = False  # not a pytest class

    x: np.ndarray
    y: np.ndarray
    correct_source: int
    correct_features: int | None
    correct_decoded: int
    path: Path | None = None
    meta: dict[str, Any] | None = None


def partners(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n)`` with no fixed point (each image gets another image's style)."""
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, 1)  # a single cycle through the shuffled order
    return out


def make_testset(config: TestsetConfig | None = None, *, inverter: FeatureInverter | None = None,
                 images: np.ndarray | None = None, labels: np.ndarray | None = None) -> TestsetResult:
    """Decode shifted features of every image of the configured set and write the data set to ``config.output``.

    ``inverter`` replaces the decoder file; ``images``/``labels`` (uint8 ``(N, H, W, 3)``, int ``(N,)``) replace
    the configured images.
    """
    cfg = config or TestsetConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if inverter is None:
        inverter, _ = open_inverter(cfg.decoder, model=cfg.model, layer=cfg.layer, img_size=cfg.img_size,
                                    checkpoint=cfg.checkpoint, device=cfg.device)
    size = inverter.img_size
    if images is None or labels is None:
        images, labels = load_images(cfg.dataset, cfg.data_dir, cfg.split, size, cfg.num_images)
    images, labels = images[: cfg.num_images], np.asarray(labels, dtype=np.int64)[: cfg.num_images]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(f"images must be uint8 (N, {size}, {size}, 3) for this decoder, got {images.dtype} "
                         f"{images.shape}: resize them to {size} px or train a decoder for their size")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels: pass one label per image")
    device = torch.device(cfg.device)
    suffix = SuffixModel(inverter.encoder) if cfg.variant == "advbn" else None
    style_of = partners(len(images), cfg.seed) if cfg.variant == "adain" else None
    out = np.empty_like(images)
    counts = {"source": 0, "features": 0, "decoded": 0}
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        for i in tqdm(range(0, len(images), cfg.batch_size), desc=f"testset {cfg.variant}", unit="batch",
                      disable=not cfg.progress, dynamic_ncols=True):
            x = to_tensor(images[i:i + cfg.batch_size], device)
            y = torch.from_numpy(labels[i:i + cfg.batch_size]).to(device)
            f = inverter.encode(x)
            counts["source"] += int((inverter.classify(x).argmax(1) == y).sum())
            if suffix is not None:
                shift = advbn_shift(suffix, f, x, y, eps=cfg.eps, steps=cfg.steps, step_size=cfg.step_size,
                                    clamp_min=cfg.clamp_min, per_instance=cfg.stats == "instance")
                f = shift.features
                counts["features"] += int((shift.adv_logits.argmax(1) == y).sum())
            elif style_of is not None:
                style = inverter.encode(to_tensor(images[style_of[i:i + cfg.batch_size]], device))
                f = adain(f, style, clamp_min=cfg.clamp_min)
            out[i:i + len(x)] = to_uint8(inverter.decode(f))
            decoded = to_tensor(out[i:i + len(x)], device)  # what is saved: the quantised images
            counts["decoded"] += int((inverter.classify(decoded).argmax(1) == y).sum())
    if suffix is not None:
        suffix.close()
    n = len(images)
    result = TestsetResult(out, labels, counts["source"], counts["features"] if suffix is not None else None,
                           counts["decoded"])
    meta = {"variant": cfg.variant, "num_images": n, "model": inverter.name, "layer": inverter.layer,
            "img_size": size, "accuracy_source": counts["source"] / max(1, n),
            "accuracy_features": None if suffix is None else counts["features"] / max(1, n),
            "accuracy_decoded": counts["decoded"] / max(1, n), "decoder_psnr": inverter.info.get("psnr"),
            "config": cfg.to_dict(),
            "eval": f"advbn-aug eval --model {inverter.name} --data-dir {cfg.output or '<output>'} --split "
                    "test_lossless (its 'clean' accuracy is the accuracy on this set)"}
    if style_of is not None:
        meta["style_partner"] = style_of.tolist()
    result.meta = meta
    if cfg.output:
        folder = Path(cfg.output)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "testset.tmp.npz"
        np.savez_compressed(tmp, x=out, y=labels)
        tmp.replace(folder / TESTSET_FILE)
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        result.path = folder / TESTSET_FILE
        _log.info("wrote %d %s images to %s", n, cfg.variant, result.path)
    return result
