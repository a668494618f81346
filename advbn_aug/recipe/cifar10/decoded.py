"""The decoded test sets of the recipe (issue 14): a decoder trained once on the pretrained model's features at the
AdvBN layer, and the 1,000 lossless test images decoded from shifted features (:mod:`advbn_aug.visualise`):

- ``advbn``: AdvBN-perturbed features (eps 1.1, 6 steps, batch statistics), attacked against the pretrained model;
- ``adain``: each image's channel statistics at the layer replaced by another image's ("style transfer in feature
  space");
- ``reconstruct``: plain reconstructions, the control for what the decoder alone does to accuracy.

Made once per (model, layer, settings) under ``<runs>/_cache/decoded-<key>/`` (concurrent workers wait for the one
that makes them) and read by every run's ``decoded`` evaluation mode. The key hashes the *settings*: the decoder is
trained on each machine, and another machine's decoder decodes other pixels, so each evaluation records the sha256
of the images it saw (:func:`set_identity`), and the table compares decoded numbers only within one set
(:data:`DECODED`, :mod:`advbn_aug.recipe.cifar10.generated_sets`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from advbn_aug.eval.fingerprint import array_sha256, parts_sha256
from advbn_aug.recipe.cifar10.config import RecipeConfig
from advbn_aug.recipe.cifar10.generated_sets import GeneratedSet
from advbn_aug.recipe.core.config import digest
from advbn_aug.recipe.core.lock import made_once

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)

__all__ = ["VARIANTS", "LEGACY_SET", "DECODED", "decoded_key", "decoded_sets", "set_identity"]

VARIANTS: tuple[str, ...] = ("advbn", "adain", "reconstruct")
LEGACY_SET = "original 2026-11-30 set"  # runs evaluated before the sets' sha256 was recorded
DECODED = GeneratedSet(extra="decoded", legacy=LEGACY_SET, heading="Decoded test sets", short="decoded",
                       made="Each machine trains its own feature decoder and decodes its own test sets (advbn, adain, "
                            "reconstruct), and the sets of different machines differ")


def decoded_key(cfg: RecipeConfig) -> str:
    """Digest of what the decoded sets depend on: the model, the layer and the decoder / test-set settings."""
    return digest({"model": cfg.model, "layer": cfg.advbn.get("layer", "layer1"), "decoded": dict(cfg.decoded),
                   "version": 1})


def decoded_sets(cfg: RecipeConfig, cache_root: Path, data_dir: str | Path | None = None,
                 progress: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{variant: (uint8 images (N, 32, 32, 3), labels (N,))}``, made once and cached (see the module doc)."""
    folder = cache_root / f"decoded-{decoded_key(cfg)}"
    return made_once(folder, lambda: _decoded_locked(cfg, folder, data_dir, progress), "the decoded test sets")


def set_identity(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """``{"sha256": {variant: sha256 of its uint8 images}, "set_sha256": one sha256 of them all}`` of the sets as
    :func:`decoded_sets` returns them (or as ``np.load(<cache>/<variant>/test_lossless1000.npz)`` holds them)."""
    sha = {v: array_sha256(x) for v, (x, _) in sets.items()}
    return {"sha256": sha, "set_sha256": parts_sha256(sha)}


def _decoded_locked(cfg: RecipeConfig, folder: Path, data_dir: str | Path | None, progress: bool
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from advbn_aug.visualise import DecoderConfig, TestsetConfig, make_testset, train_decoder
    from advbn_aug.visualise.testset import TESTSET_FILE

    settings: dict[str, Any] = dict(cfg.decoded)
    layer = cfg.advbn.get("layer", "layer1")
    cifar_dir = str(data_dir) if data_dir is not None else None
    decoder = folder / "decoder" / "decoder.pt"
    if not decoder.is_file():
        t0 = time.perf_counter()
        res = train_decoder(DecoderConfig(model=cfg.model, layer=layer, data_dir=cifar_dir, progress=progress,
                                          output=str(decoder.parent), epochs=int(settings.get("epochs", 5)),
                                          train_images=settings.get("train_images", 6000)))
        log.info("decoded sets: decoder for %s %s trained in %.0fs, held-out PSNR %.2f dB", cfg.model, layer,
                 time.perf_counter() - t0, res.psnr)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for variant in VARIANTS:
        path = folder / variant / TESTSET_FILE
        if not path.is_file():
            make_testset(TestsetConfig(model=cfg.model, layer=layer, decoder=str(decoder), data_dir=cifar_dir,
                                       output=str(path.parent), variant=variant, progress=progress,
                                       eps=float(settings.get("eps", 1.1)), steps=int(settings.get("steps", 6)),
                                       num_images=settings.get("images")))
        with np.load(path) as z:
            out[variant] = (z["x"], z["y"])
    return out
