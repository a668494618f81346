"""Evaluation modes added to a finished run, beside its main evaluation.

Each mode is stored under ``result["extras"][name]`` with its own key (a digest of the settings it depends on), so
adding or changing a mode evaluates the models that are still on disk without retraining, and leaves the main
result (matched by ``train_key``/``eval_key``) valid. A run whose model files are gone (a result committed on another
machine) keeps its missing modes; the table lists them.

Every benchmark has ``adv_route`` (AdvBN arms): the model with its adversarial BatchNorms (``model_adv.pt``) through
the benchmark's main evaluation (the paper evaluates style shifts through this route); runs trained with weight
averaging (``ema_decay``) add their average through the adversarial BatchNorms (``model_ema_adv.pt``) under
``["ema"]``. A benchmark's other modes come from its :class:`~advbn_aug.recipe.core.benchmark.Benchmark`
(``mode_key``, ``run_mode``; the CIFAR-10 ones are in :mod:`advbn_aug.recipe.cifar10.eval_modes`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advbn_aug.recipe.core.benchmark import benchmark_of
from advbn_aug.recipe.core.config import ArmConfig, digest
from advbn_aug.recipe.core.provenance import code_version

__all__ = ["extra_key", "missing_extras", "load_run_model", "evaluate_extras"]

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)


def extra_key(cfg: Any, name: str) -> str:
    """Digest of the settings evaluation mode ``name`` depends on (besides the trained model)."""
    base = {"name": name, "eval": cfg.eval_key(), "version": 1}
    mode_key = benchmark_of(cfg).mode_key
    if mode_key is not None:
        base.update(mode_key(cfg, name))
    return digest(base)


def missing_extras(cfg: Any, arm: ArmConfig, result: dict[str, Any]) -> list[str]:
    """The modes of ``cfg.extras`` that ``result`` lacks (or has with other settings); ``adv_route`` only for
    AdvBN arms."""
    have = result.get("extras", {})
    return [n for n in cfg.extras if (n != "adv_route" or arm.advbn)
            and have.get(n, {}).get("key") != extra_key(cfg, n)]


def load_run_model(cfg: Any, path: Path, fix: str) -> nn.Module:
    """An exported model file of a run (``model.pt`` / ``model_adv.pt``) in a fresh model; an unusable file raises
    :class:`~advbn_aug.eval.checkpoint.CheckpointError` naming it, with ``fix`` as the remedy."""
    from advbn_aug.eval.checkpoint import CheckpointError

    try:
        return benchmark_of(cfg).load_exported(cfg, path)
    except CheckpointError as err:
        raise err.with_fix(fix, "exported model") from None


def _adv_route(cfg: Any, model_adv: nn.Module, data: Any, device: torch.device, amp: bool, name: str, run_dir: Path,
               cache_dir: str | None, progress: bool, ema_adv: nn.Module | None = None) -> dict[str, Any]:
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


def evaluate_extras(cfg: Any, arm: ArmConfig, result: dict[str, Any], run_dir: Path, data: Any,
                    device: torch.device, amp: bool, cache_dir: str | None, progress: bool,
                    cache_root: Path | None = None) -> bool:
    """Add the missing evaluation modes of ``result`` (in place) from the models in ``run_dir``; returns whether
    anything was added. A mode whose inputs are unavailable (model files gone, an optional dependency not
    installed) is logged and left missing. ``cache_root``: where test sets a mode makes are made once (default: the
    ``_cache`` folder of the runs folder)."""
    todo = missing_extras(cfg, arm, result)
    model_path, adv_path = run_dir / "model.pt", run_dir / "model_adv.pt"
    if not todo or not model_path.is_file():
        return False
    bench = benchmark_of(cfg)
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
        if mode not in bench.clean_route_modes and arm.advbn and not adv_path.is_file():
            log.warning("%s: %s skipped: %s is missing (trained before the adversarial route was exported)", name,
                        mode, adv_path)
            continue
        if mode == "adv_route":
            value = _adv_route(cfg, models["adv"], data, device, amp, name, run_dir, cache_dir, progress, ema_adv)
        else:
            if bench.run_mode is None:
                raise ValueError(f"the {bench.name} benchmark has no evaluation mode {mode!r}")
            value = bench.run_mode(mode, cfg, models, data, device, amp, name, cache_dir,
                                   cache_root or run_dir.parent.parent / "_cache")
            if value is None:  # skipped; the benchmark logged why
                continue
        extras[mode] = {"key": extra_key(cfg, mode), **value, "seconds": round(time.perf_counter() - t0, 1),
                        "code": code_version()}
        log.info("%s: evaluation mode %s done (%.0fs)", name, mode, extras[mode]["seconds"])
        added = True
    return added
