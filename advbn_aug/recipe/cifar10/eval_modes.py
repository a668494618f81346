"""The CIFAR-10 recipe's evaluation modes beside ``adv_route`` (:mod:`advbn_aug.recipe.core.eval_modes` runs them):

- ``tta``: mCA on the first ``tta_images`` images of the corruption subset (and clean accuracy on them) without
  adaptation, with statistics re-estimated per set (``full``) and with online momentum updates (``online``),
  through the clean route.
- ``stylized``: accuracy on Stylized-CIFAR-10 (:mod:`advbn_aug.eval.stylized`) at each strength, per TTA mode,
  through the clean route and (AdvBN arms) the adversarial one; with the sha256 of the set's images per strength
  (``sha256``) and of the whole set (``set_sha256``, its identity in the table), and, when the config pins the set
  (``stylized_sha256``), the pin and ``matches_expected`` (a differing set is logged as a warning naming both).
- ``decoded``: accuracy on the test images decoded from AdvBN-perturbed and AdaIN-swapped features, and on plain
  reconstructions (:mod:`advbn_aug.recipe.cifar10.decoded`), through both routes; with the sha256 of each variant's
  images (``sha256``) and of the whole set (``set_sha256``, its identity in the table).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD
from advbn_aug.recipe.cifar10.config import RecipeConfig
from advbn_aug.recipe.cifar10.data import RecipeData
from advbn_aug.recipe.cifar10.evaluate import fuse_for_eval

__all__ = ["EXTRAS", "CLEAN_ROUTE_MODES", "mode_key", "run_mode", "tta_subset"]

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)

EXTRAS: tuple[str, ...] = ("adv_route", "tta", "stylized", "decoded")
CLEAN_ROUTE_MODES: tuple[str, ...] = ("tta",)  # the modes that evaluate the clean route only
_NETWORKS: dict[tuple[str | None, int], Any] = {}


def mode_key(cfg: RecipeConfig, name: str) -> dict[str, Any]:
    """The settings of mode ``name`` that its key holds besides the main evaluation's (``{}`` for ``adv_route``)."""
    if name == "tta":
        return dict(images=cfg.tta_images, modes=list(cfg.tta_modes), momentum=cfg.tta_momentum,
                    subset="balanced")  # the first-N subset of version 1 was one or two classes (sorted test set)
    if name == "stylized":
        return dict(stylized=dict(cfg.stylized), modes=list(cfg.tta_modes), momentum=cfg.tta_momentum)
    if name == "decoded":
        from advbn_aug.recipe.cifar10.decoded import decoded_key

        return dict(sets=decoded_key(cfg))
    return {}


def run_mode(mode: str, cfg: RecipeConfig, models: dict[str, nn.Module], data: RecipeData, device: torch.device,
             amp: bool, name: str, cache_dir: str | None, cache_root: Path) -> dict[str, Any] | None:
    """The fields of mode ``mode`` (``tta``, ``stylized`` or ``decoded``) of one run's ``models`` (``{"clean",
    "adv" (AdvBN arms)}``); ``None`` when ``stylized`` is skipped for want of its optional dependencies."""
    if mode == "tta":
        return _tta(cfg, models["clean"], data, device, amp, cache_dir)
    if mode == "decoded":
        return _decoded(cfg, models, data, device, amp, cache_root)
    try:
        return _stylized(cfg, models, data, device, amp, name, cache_dir)
    except ImportError as err:
        log.warning("%s: stylized skipped: %s", name, err)
        return None


def _norm() -> dict[str, Any]:
    return {"mean": CIFAR_RESNET_MEAN, "std": CIFAR_RESNET_STD}


def tta_subset(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the test-time adaptation subset: ``n`` images, class-balanced, classes in turn (every batch of
    ``10 k`` images holds ``k`` of each CIFAR-10 class), fixed by seed 0."""
    from advbn_aug.eval.stylized import balanced_subset

    return balanced_subset(labels, min(n, len(labels)), seed=0)


def _tta(cfg: RecipeConfig, model: nn.Module, data: RecipeData, device: torch.device, amp: bool,
         cache_dir: str | None) -> dict[str, Any]:
    from advbn_aug.eval import corrupted_set, images_fingerprint, resolve_corruptions
    from advbn_aug.eval.bn_adapt import adapted_predict
    from advbn_aug.eval.evaluate import iter_batches, predict, prepare_batch

    # a class-balanced subset in round-robin class order: the JPEG test set is stored sorted by class, so its first
    # images are one or two classes, and adapting BatchNorm statistics to them measures the class imbalance
    idx = tta_subset(data.eval_y, cfg.tta_images)
    n = len(idx)
    x_clean, y = data.eval_x[idx], data.eval_y[idx]
    fingerprint = images_fingerprint(data.eval_x)  # the cached sets are those of the main evaluation
    run = dict(batch_size=cfg.eval_batch_size, device=device, amp=amp, **_norm())
    folded = fuse_for_eval(model)  # no adaptation: the same function, faster

    def acc(images: np.ndarray, mode: str) -> float:
        m = folded if mode == "none" else model
        preds = adapted_predict(predict, lambda xb: prepare_batch(xb, device, run["mean"], run["std"]), m, images,
                                lambda imgs: iter_batches(imgs, cfg.eval_batch_size), mode, cfg.tta_momentum, **run)[0]
        return float((preds == y).mean())

    modes = ["none", *[m for m in cfg.tta_modes if m != "none"]]
    out: dict[str, Any] = {"images": n, "modes": {}}
    per_set: dict[str, list[float]] = {m: [] for m in modes}
    for c in resolve_corruptions(cfg.corruptions):
        for s in cfg.severities:
            xs = corrupted_set(data.eval_x, c, s, dataset="cifar10", cache_dir=cache_dir, fingerprint=fingerprint)[0]
            for m in modes:
                per_set[m].append(acc(xs[idx], m))
    for m in modes:
        out["modes"][m] = {"clean_acc": acc(x_clean, m), "mca": float(np.mean(per_set[m]))}
    return out


def _stylized(cfg: RecipeConfig, models: dict[str, nn.Module], data: RecipeData, device: torch.device, amp: bool,
              name: str, cache_dir: str | None) -> dict[str, Any]:
    from advbn_aug.eval.stylized import StylizedConfig, evaluate_stylized, open_network

    scfg = StylizedConfig.from_dict(dict(cfg.stylized))
    key = (scfg.models, scfg.threads)
    if key not in _NETWORKS:  # the ONNX sessions take seconds to open: once per process
        _NETWORKS[key] = open_network(scfg.models, scfg.threads)
    network = _NETWORKS[key]
    out: dict[str, Any] = {}
    for route, model in models.items():
        modes = ["none", *[m for m in cfg.tta_modes if m != "none"]] if route == "clean" else ["none"]
        for mode in modes:
            res = evaluate_stylized(model, data.test_x, data.test_y, scfg, batch_size=cfg.eval_batch_size,
                                    device=str(device), amp=amp, tta=mode, tta_momentum=cfg.tta_momentum,
                                    name=f"{name} {route} {mode}", network=network, cache_dir=cache_dir,
                                    expected_sha256=cfg.stylized_sha256, **_norm())
            out.setdefault(route, {})[mode] = {"clean_acc": res.clean_accuracy,
                                               "accuracy": {f"{s:g}": a for s, a in res.accuracy.items()},
                                               "mean": float(np.mean(list(res.accuracy.values())))}
            out["images"] = res.num_images
    identity = res.to_dict()  # every call above evaluated the same generated set
    out.update(sha256=identity["sha256"], set_sha256=identity["set_sha256"])
    if cfg.stylized_sha256 is not None:
        out.update(expected_sha256=identity["expected_sha256"], matches_expected=identity["matches_expected"])
        if (warning := res.mismatch_warning()) is not None:
            log.warning("%s: %s; recorded with matches_expected: false, and the table compares it only with runs "
                        "on the same set", name, warning)
    return out


def _decoded(cfg: RecipeConfig, models: dict[str, nn.Module], data: RecipeData, device: torch.device, amp: bool,
             cache_root: Path) -> dict[str, Any]:
    from advbn_aug.eval import predict
    from advbn_aug.recipe.cifar10.decoded import decoded_sets, set_identity

    sets = decoded_sets(cfg, cache_root, data.data_dir)
    run = dict(batch_size=cfg.eval_batch_size, device=device, amp=amp, **_norm())
    out: dict[str, Any] = {"images": len(next(iter(sets.values()))[1])}
    for route, model in models.items():
        folded = fuse_for_eval(model)
        out[route] = {v: float((predict(folded, x, **run)[0] == y).mean()) for v, (x, y) in sets.items()}
    out.update(set_identity(sets))  # the sets' identity: their pixels (another machine decodes others), not the key
    return out
