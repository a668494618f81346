"""Running the recipe: one (arm, seed) run (train resumably, export, evaluate, store ``result.json``), every run of
a config, the finished runs (in the runs folder or their committed copies), and the commit of the running code."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from advbn_aug.device import resolve_device
from advbn_aug.recipe.core.benchmark import benchmark_of
from advbn_aug.recipe.core.config import ArmConfig, digest, load_arms
from advbn_aug.recipe.core.eval_modes import evaluate_extras, load_run_model, missing_extras
from advbn_aug.recipe.core.lock import run_lock
from advbn_aug.recipe.core.provenance import code_version
from advbn_aug.recipe.core.train import (
    deterministic_algorithms,
    export_state_dict,
    load_fresh_model,
    sha256_file,
    train_arm,
)

__all__ = ["run_recipe", "run_arm", "device_name"]

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)


def _run_logger(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


def _evaluate(model: torch.nn.Module, cfg: Any, data: Any, device: torch.device, amp: bool, name: str,
              out_dir: Path, cache_dir: str | None, progress: bool) -> dict[str, Any]:
    """One exported model's main evaluation, by the benchmark of ``cfg``."""
    return benchmark_of(cfg).evaluate(model, cfg, data, device, amp, name, out_dir, cache_dir, progress)


def _finished(path: Path, cfg: Any, arm: ArmConfig) -> dict[str, Any] | None:
    """The result stored at ``path`` if it is a finished run of ``arm`` with ``cfg``'s settings."""
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    same = (old.get("train_key") == digest(cfg.train_key()) and old.get("eval_key") == digest(cfg.eval_key())
            and old.get("arm") == arm.to_dict())
    return old if same else None


def run_arm(cfg: Any, arm: ArmConfig, seed: int, data: Any, runs_dir: Path, *,
            device: torch.device, amp: bool = True, cache_dir: str | None = None, progress: bool = True,
            force: bool = False, log_dir: Path | None = None, archive_dir: Path | None = None
            ) -> dict[str, Any] | None:
    """Train (resumably), export, evaluate one (arm, seed); returns its result dict, or ``None`` if another process
    holds the run. A finished run with the same settings (in ``runs_dir``, or its committed copy in ``archive_dir``)
    is read back instead of recomputed; a new result is also copied to ``archive_dir/<arm>/seed<k>/result.json``."""
    run_dir = runs_dir / arm.name / f"seed{seed}"
    result_path = run_dir / "result.json"
    train_key, eval_key = digest(cfg.train_key()), digest(cfg.eval_key())
    archived = archive_dir / arm.name / f"seed{seed}" / "result.json" if archive_dir is not None else None
    old = None
    for path in (result_path, archived):
        old = _finished(path, cfg, arm) if path is not None and not force else None
        if old is not None:
            if path == result_path and missing_extras(cfg, arm, old) and (run_dir / "model.pt").is_file():
                break  # finished, but evaluation modes are missing and the model is here: add them
            log.info("skip %s seed %d: finished (%s)", arm.name, seed, path)
            return old
    with run_lock(run_dir) as mine:
        if not mine:
            log.info("skip %s seed %d: another process is running it", arm.name, seed)
            return None
        done = _finished(result_path, cfg, arm) if old is None and not force else None
        if done is not None and not missing_extras(cfg, arm, done):  # another process finished it meanwhile
            log.info("skip %s seed %d: finished by another process", arm.name, seed)
            return done
        handler = _run_logger((log_dir or run_dir) / f"{arm.name}_seed{seed}.log")
        try:
            result = old or _run_arm_locked(cfg, arm, seed, data, run_dir, device, amp, cache_dir, progress,
                                            runs_dir, train_key, eval_key, force)
            if evaluate_extras(cfg, arm, result, run_dir, data, device, amp, cache_dir, progress):
                result_path.write_text(json.dumps(result, indent=1))
            if archived is not None:
                archived.parent.mkdir(parents=True, exist_ok=True)
                archived.write_text(json.dumps(result, indent=1))
            return result
        finally:
            log.removeHandler(handler)
            handler.close()


def _run_arm_locked(cfg, arm, seed, data, run_dir, device, amp, cache_dir, progress, runs_dir, train_key, eval_key,
                    force):
    model_path = run_dir / "model.pt"
    meta_path = run_dir / "train.json"
    if force:
        for p in (model_path, meta_path, run_dir / "ckpt.pt", run_dir / "result.json"):
            p.unlink(missing_ok=True)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if meta is not None and (meta.get("train_key") != train_key or meta.get("arm") != arm.to_dict()
                             or not model_path.is_file()):
        meta = None
    bench = benchmark_of(cfg)
    _, keys = load_fresh_model(cfg)  # before training, as always: building the model draws from the global RNG
    if meta is None:
        for stale in _EMA_FILES:  # a weight average of an earlier training of this folder is not this run's
            (run_dir / stale).unlink(missing_ok=True)
        if not arm.train:
            model = bench.untrained(cfg, data, device) if bench.untrained is not None else load_fresh_model(cfg)[0]
            info: dict[str, Any] = {"history": [], "train_seconds": 0.0, "trainable_parameters": 0}
        else:
            extra = _deepaugment(bench, cfg, arm, data, runs_dir, device, progress)
            with deterministic_algorithms():
                model, info = train_arm(cfg, arm, seed, data, run_dir, device, amp, extra, progress)
        state = export_state_dict(model, keys)
        tmp = model_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(model_path)
        meta = {"arm": arm.to_dict(), "seed": seed, "train_key": train_key, "train": cfg.train_key(),
                "sha256": sha256_file(model_path), "code": code_version(), "device": device.type,
                "device_name": device_name(device), **info}
        meta_path.write_text(json.dumps(meta, indent=1))
        (run_dir / "ckpt.pt").unlink(missing_ok=True)
        log.info("exported %s (sha256 %s)", model_path, meta["sha256"])
    model = load_run_model(cfg, model_path, "delete it to train this run again, or put back an intact copy")
    ev = _evaluate(model, cfg, data, device, amp, f"{arm.name}/seed{seed}", run_dir / "eval", cache_dir, progress)
    ema = _evaluate_average(cfg, arm, seed, data, run_dir, meta, device, amp, cache_dir, progress)
    result = {"arm": arm.to_dict(), "seed": seed, "model": cfg.model, "train_key": train_key, "eval_key": eval_key,
              "model_path": str(model_path), "sha256": meta["sha256"], "train_seconds": meta["train_seconds"],
              "trainable_parameters": meta["trainable_parameters"],
              "final_loss": meta["history"][-1] if meta["history"] else None, **ev, **ema,
              "code": meta.get("code"), "eval_code": code_version(),
              **{k: meta[k] for k in ("device", "device_name") if k in meta},
              "finished": _dt.datetime.now().isoformat(timespec="seconds")}
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    log.info("%s seed %d: %s  (train %.0fs, eval %.0fs)", arm.name, seed, bench.summary(result),
             result["train_seconds"], result["eval_seconds"])
    return result


_EMA_FILES = ("model_ema.pt", "model_ema_adv.pt")


def _deepaugment(bench: Any, cfg: Any, arm: ArmConfig, data: Any, runs_dir: Path, device: torch.device,
                 progress: bool) -> Any:
    """The DeepAugment images added to the training pool of an arm with ``deepaugment: true`` (``None`` otherwise),
    made once under ``runs_dir/_cache``."""
    if not arm.deepaugment:
        return None
    if bench.deepaugment_data is None:
        raise ValueError(f"arm {arm.name!r} asks for DeepAugment data, which the {bench.name} benchmark does not have")
    return bench.deepaugment_data(cfg, data, runs_dir / "_cache", device, progress)


def _evaluate_average(cfg: Any, arm: ArmConfig, seed: int, data: Any, run_dir: Path, meta: dict[str, Any],
                      device: torch.device, amp: bool, cache_dir: str | None, progress: bool) -> dict[str, Any]:
    """``{"ema": {"decay", "sha256", <the main evaluation's fields>}}`` for a run trained with weight averaging
    (``model_ema.pt``, clean BatchNorms; the adversarial route is the ``adv_route`` mode's); ``{}`` otherwise."""
    if getattr(cfg, "ema_decay", None) is None or "ema" not in meta:
        return {}
    bench = benchmark_of(cfg)
    path = run_dir / _EMA_FILES[0]
    fix = f"train this run again (--arms {arm.name} --seeds {seed} --force), or put back an intact copy"
    model = load_run_model(cfg, path, fix)
    ev = _evaluate(model, cfg, data, device, amp, f"{arm.name}/seed{seed} (EMA)", run_dir / "eval_ema", cache_dir,
                   progress)
    return {"ema": {"decay": meta["ema"]["decay"], "sha256": meta["ema"]["sha256"],
                    **{k: ev[k] for k in bench.adv_keys if k in ev}}}


def device_name(device: torch.device) -> str:
    """The name a result records for the device that trained it: the GPU's model, or ``cpu``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def _device_type(result: dict[str, Any]) -> str:
    """``cuda`` / ``cpu``; a result from before devices were recorded is a CPU one (no GPU had run the recipe)."""
    return result.get("device", "cpu")


def _check_one_device(found: Sequence[dict[str, Any]], device_type: str | None, folders: str) -> None:
    """Refuse to put results of different device types in one table (``device_type``: the one this command runs
    on; ``None``: only collecting)."""
    types = sorted({_device_type(r) for r in found} | ({device_type} if device_type else set()))
    if len(types) > 1:
        held = sorted({_device_type(r) for r in found})
        raise ValueError(f"{folders} hold finished runs made on {'/'.join(held)}"
                         + (f" and this command runs on {device_type}" if device_type else "")
                         + ": a table never mixes devices. Pass --output and --runs-dir of their own (the GPU "
                         "table's defaults, --preset gpu: recipes/cifar10/results_gpu and runs/cifar10-gpu)")


def run_recipe(cfg: Any, *, output: str | Path, runs_dir: str | Path, data_dir: str | Path | None = None,
               arms_dir: str | Path | None = None, device: str | None = None, amp: bool = True,
               cache_dir: str | None = None, progress: bool = True, force: bool = False,
               commands: Sequence[str] = (), collect_only: bool = False,
               on_start: Callable[[], None] | None = None, workers: int = 1, table: bool = True) -> dict[str, Any]:
    """Run every (arm, seed) of ``cfg`` (skipping finished ones), rewriting the table after each; returns it.
    ``collect_only``: run nothing, only rewrite the table from the finished runs. ``on_start``: called once the
    arms, the device and the data are checked (and the data loaded), before anything is written; a rejected call
    (unknown arm, missing data, runs of another device type in the folders, ...) raises before it. ``workers`` > 1:
    build the corruption cache on every core, then run the jobs in that many processes sharing ``runs_dir``
    (:mod:`advbn_aug.recipe.core.parallel`) and write the table once they are done. ``table=False``: write no table."""
    bench = benchmark_of(cfg)
    arms = load_arms(arms_dir, bench.arms)
    unknown = [a for a in cfg.arms if a not in arms]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; known arms: {list(arms)}")
    if bench.deepaugment_data is None and any(arms[a].deepaugment for a in cfg.arms):
        raise ValueError(f"the {bench.name} benchmark has no DeepAugment data: drop the arms with deepaugment: true")
    output, runs_dir = Path(output), Path(runs_dir)
    archive = output / "runs"
    folders = f"{runs_dir} and {archive}"
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if workers > 1 and force:
        raise ValueError("--force with several workers would redo each run once per worker: delete the runs to redo "
                         "(or pass --workers 1)")
    code_version()  # the commit of the code this process runs, read before any work
    jobs = [(arms[a], s) for s in cfg.seeds for a in cfg.arms if arms[a].train or s == cfg.seeds[0]]
    if collect_only:
        if on_start is not None:
            on_start()
        found = _collect(cfg, jobs, runs_dir, archive)
        _check_one_device(found, None, folders)
        log.info("%d of %d runs finished", len(found), len(jobs))
        return bench.aggregate(found, cfg, output, [a.name for a, _ in jobs], commands, jobs) if found else {}
    dev = resolve_device(device)
    log_dir = output / "logs"
    data = bench.load_data(cfg, data_dir)

    def collect() -> list[dict[str, Any]]:
        return _collect(cfg, jobs, runs_dir, archive)

    _check_one_device(collect(), dev.type, folders)
    if on_start is not None:
        on_start()
    log.info(data.describe())
    results: list[dict[str, Any]] = []
    doc: dict[str, Any] = {}
    if workers > 1:
        from advbn_aug.recipe.core.parallel import run_workers

        if bench.prepare_workers is not None:
            bench.prepare_workers(cfg, data, cache_dir, os.cpu_count() or 1)
        del data
        kwargs = dict(output=output, runs_dir=runs_dir, data_dir=data_dir, arms_dir=arms_dir, device=str(dev),
                      amp=amp, cache_dir=cache_dir)
        try:
            run_workers(workers, run_recipe, cfg, kwargs)
        finally:
            results = collect()
            if results:
                doc = bench.aggregate(results, cfg, output, [a.name for a, _ in jobs], commands, jobs)
            log.info("%d of %d runs finished", len(results), len(jobs))
        return doc

    for arm, seed in jobs:
        r = run_arm(cfg, arm, seed, data, runs_dir, device=dev, amp=amp, cache_dir=cache_dir, progress=progress,
                    force=force, log_dir=log_dir, archive_dir=archive)
        if r is not None and table:
            results = collect()
            doc = bench.aggregate(results, cfg, output, [a.name for a, _ in jobs], commands, jobs)
    results = collect()
    if results and table:
        doc = bench.aggregate(results, cfg, output, [a.name for a, _ in jobs], commands, jobs)
    missing = len(jobs) - len(results)
    if missing and table:
        log.info("%d of %d runs are not finished (held by another process?): rerun the command to collect them",
                 missing, len(jobs))
    return doc


def _collect(cfg: Any, jobs: Sequence[tuple[ArmConfig, int]], runs_dir: Path,
             archive: Path | None = None) -> list[dict[str, Any]]:
    """The finished results (same settings) of ``jobs``: from ``runs_dir``, else from the committed ``archive``."""
    found = []
    for arm, s in jobs:
        for root in (runs_dir, archive):
            r = _finished(root / arm.name / f"seed{s}" / "result.json", cfg, arm) if root is not None else None
            if r is not None:
                found.append(r)
                break
    return found
