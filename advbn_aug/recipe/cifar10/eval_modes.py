"""Evaluation modes added to a finished run: the adversarial-BatchNorm route, test-time BatchNorm adaptation and
Stylized-CIFAR-10.

Each mode is stored under ``result["extras"][name]`` with its own key (a digest of the settings it depends on), so
adding or changing a mode evaluates the models that are still on disk without retraining, and leaves the main
result (matched by ``train_key``/``eval_key``) valid. A run whose model files are gone (a result committed on another
machine) keeps its missing modes; the table lists them.

- ``adv_route`` (AdvBN arms): the model with its adversarial BatchNorms (``model_adv.pt``) on the clean test sets and
  the corruption grid (PACS: the target domains), exactly as the main evaluation (the paper evaluates style shifts
  through this route). Runs trained with weight averaging (PACS ``ema_decay``) add their average through the
  adversarial BatchNorms (``model_ema_adv.pt``) under ``["ema"]``.
- ``tta``: mCA on the first ``tta_images`` images of the corruption subset (and clean accuracy on them) without
  adaptation, with statistics re-estimated per set (``full``) and with online momentum updates (``online``),
  through the clean route.
- ``stylized``: accuracy on Stylized-CIFAR-10 (:mod:`advbn_aug.eval.stylized`) at each strength, per TTA mode,
  through the clean route and (AdvBN arms) the adversarial one; with the sha256 of the set's images per strength
  (``sha256``) and of the whole set (``set_sha256``, its identity in the table), and, when the config pins the set
  (``stylized_sha256``), the pin and ``matches_expected`` (a differing set is logged as a warning naming both).
- ``decoded``: accuracy on the test images decoded from AdvBN-perturbed and AdaIN-swapped features, and on plain
  reconstructions (:mod:`advbn_aug.recipe.cifar10.decoded`), through both routes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advbn_aug.recipe.cifar10.config import ArmConfig, RecipeConfig, digest
from advbn_aug.recipe.cifar10.data import RecipeData
from advbn_aug.recipe.cifar10.evaluate import fuse_for_eval
from advbn_aug.recipe.core.benchmark import benchmark_of
from advbn_aug.recipe.core.provenance import code_version

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)

EXTRAS: tuple[str, ...] = ("adv_route", "tta", "stylized", "decoded")
_NETWORKS: dict[tuple[str | None, int], Any] = {}


def extra_key(cfg: RecipeConfig, name: str) -> str:
    """Digest of the settings evaluation mode ``name`` depends on (besides the trained model)."""
    base = {"name": name, "eval": cfg.eval_key(), "version": 1}
    if name == "tta":
        base.update(images=cfg.tta_images, modes=list(cfg.tta_modes), momentum=cfg.tta_momentum,
                    subset="balanced")  # the first-N subset of version 1 was one or two classes (sorted test set)
    elif name == "stylized":
        base.update(stylized=dict(cfg.stylized), modes=list(cfg.tta_modes), momentum=cfg.tta_momentum)
    elif name == "decoded":
        from advbn_aug.recipe.cifar10.decoded import decoded_key

        base.update(sets=decoded_key(cfg))
    return digest(base)


def missing_extras(cfg: RecipeConfig, arm: ArmConfig, result: dict[str, Any]) -> list[str]:
    """The modes of ``cfg.extras`` that ``result`` lacks (or has with other settings); ``adv_route`` only for
    AdvBN arms."""
    have = result.get("extras", {})
    return [n for n in cfg.extras if (n != "adv_route" or arm.advbn)
            and have.get(n, {}).get("key") != extra_key(cfg, n)]


def load_run_model(cfg: RecipeConfig, path: Path, fix: str) -> nn.Module:
    """An exported model file of a run (``model.pt`` / ``model_adv.pt``) in a fresh model; an unusable file raises
    :class:`~advbn_aug.eval.checkpoint.CheckpointError` naming it, with ``fix`` as the remedy."""
    from advbn_aug.eval.checkpoint import CheckpointError

    try:
        return benchmark_of(cfg).load_exported(cfg, path)
    except CheckpointError as err:
        raise err.with_fix(fix, "exported model") from None


def _norm(cfg: RecipeConfig) -> dict[str, Any]:
    bench = benchmark_of(cfg)
    return {"mean": bench.mean, "std": bench.std}


def _adv_route(cfg: RecipeConfig, model_adv: nn.Module, data: RecipeData, device: torch.device, amp: bool,
               name: str, run_dir: Path, cache_dir: str | None, progress: bool,
               ema_adv: nn.Module | None = None) -> dict[str, Any]:
    """The adversarial route's fields; with ``ema_adv`` (the weight average through the adversarial BatchNorms,
    runs trained with ``ema_decay``), also the same fields of it under ``"ema"``."""
    bench = benchmark_of(cfg)
    ev = bench.evaluate(model_adv, cfg, data, device, amp, f"{name} (adv BN)", run_dir / "eval_adv", cache_dir,
                        progress)
    out = {k: ev[k] for k in bench.adv_keys if k in ev}
    if ema_adv is not None:
        ev = bench.evaluate(ema_adv, cfg, data, device, amp, f"{name} (EMA, adv BN)", run_dir / "eval_ema_adv",
                            cache_dir, progress)
        out["ema"] = {k: ev[k] for k in bench.adv_keys if k in ev}
    return out


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
    run = dict(batch_size=cfg.eval_batch_size, device=device, amp=amp, **_norm(cfg))
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
                                    expected_sha256=cfg.stylized_sha256, **_norm(cfg))
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
    from advbn_aug.recipe.cifar10.decoded import decoded_sets

    sets = decoded_sets(cfg, cache_root, data.data_dir)
    run = dict(batch_size=cfg.eval_batch_size, device=device, amp=amp, **_norm(cfg))
    out: dict[str, Any] = {"images": len(next(iter(sets.values()))[1])}
    for route, model in models.items():
        folded = fuse_for_eval(model)
        out[route] = {v: float((predict(folded, x, **run)[0] == y).mean()) for v, (x, y) in sets.items()}
    return out


def evaluate_extras(cfg: RecipeConfig, arm: ArmConfig, result: dict[str, Any], run_dir: Path, data: RecipeData,
                    device: torch.device, amp: bool, cache_dir: str | None, progress: bool,
                    cache_root: Path | None = None) -> bool:
    """Add the missing evaluation modes of ``result`` (in place) from the models in ``run_dir``; returns whether
    anything was added. A mode whose inputs are unavailable (model files gone, the ``stylized`` extra not
    installed) is logged and left missing. ``cache_root``: where the decoded sets are made once (default: the
    ``_cache`` folder of the runs folder)."""
    todo = missing_extras(cfg, arm, result)
    model_path, adv_path = run_dir / "model.pt", run_dir / "model_adv.pt"
    if not todo or not model_path.is_file():
        return False
    name = f"{arm.name}/seed{result['seed']}"
    fix = (f"delete it to keep this finished run without the evaluation modes it lacks ({', '.join(todo)}), put back "
           f"an intact copy, or train the run again with --arms {arm.name} --seeds {result['seed']} --force")
    models = {"clean": load_run_model(cfg, model_path, fix)}  # both routes, each loaded once for every mode
    if arm.advbn and adv_path.is_file():
        models["adv"] = load_run_model(cfg, adv_path, fix)
    ema_adv_path, ema_adv = run_dir / "model_ema_adv.pt", None  # runs trained with weight averaging (PACS)
    if "adv_route" in todo and getattr(cfg, "ema_decay", None) is not None and arm.advbn and ema_adv_path.is_file():
        ema_adv = load_run_model(cfg, ema_adv_path, fix)
    extras = result.setdefault("extras", {})
    added = False
    for mode in todo:
        t0 = time.perf_counter()
        if mode != "tta" and arm.advbn and not adv_path.is_file():
            log.warning("%s: %s skipped: %s is missing (trained before the adversarial route was exported)", name,
                        mode, adv_path)
            continue
        if mode == "adv_route":
            value = _adv_route(cfg, models["adv"], data, device, amp, name, run_dir, cache_dir, progress, ema_adv)
        elif mode == "tta":
            value = _tta(cfg, models["clean"], data, device, amp, cache_dir)
        elif mode == "decoded":
            value = _decoded(cfg, models, data, device, amp, cache_root or run_dir.parent.parent / "_cache")
        else:
            try:
                value = _stylized(cfg, models, data, device, amp, name, cache_dir)
            except ImportError as err:
                log.warning("%s: stylized skipped: %s", name, err)
                continue
        extras[mode] = {"key": extra_key(cfg, mode), **value, "seconds": round(time.perf_counter() - t0, 1),
                        "code": code_version()}
        log.info("%s: evaluation mode %s done (%.0fs)", name, mode, extras[mode]["seconds"])
        added = True
    return added
