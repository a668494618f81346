"""Running the recipe with several worker processes on one machine (``advbn-aug recipe cifar10 --workers N``, the
GPU table's ``--preset gpu``): the corruption cache is built first, once, on the machine's cores; then N processes
share one runs folder through the per-run locks (:mod:`advbn_aug.recipe.core.lock`), each training and evaluating the
(arm, seed) runs no other holds; the parent writes the table when they are done."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)

__all__ = ["build_corruption_cache", "run_workers", "WorkerError"]

_POOL: dict[str, Any] = {}  # a cache-pool process's images, fingerprint, cache folder and seed


class WorkerError(RuntimeError):
    """One or more worker processes failed; the finished runs are kept and the table holds them."""


def build_corruption_cache(images: np.ndarray, corruptions: Any, severities: list[int], cache_dir: str | None,
                           processes: int) -> int:
    """Generate every (corruption, severity) set of ``images`` (uint8 ``(N, H, W, 3)``, the recipe's corruption
    subset) that the cache lacks, exactly as the evaluation would (:func:`advbn_aug.eval.datasets.corrupted_set`),
    with up to ``processes`` processes; returns how many sets were generated (0: all were cached)."""
    from advbn_aug.eval import EvalConfig
    from advbn_aug.eval.datasets import images_fingerprint

    ecfg = EvalConfig(corruptions=corruptions, severities=tuple(severities), dataset="cifar10", cache_dir=cache_dir)
    cells = [(c, s) for c in ecfg.corruptions for s in ecfg.severities]
    fingerprint = images_fingerprint(images)
    state = {"images": images, "fingerprint": fingerprint, "cache_dir": cache_dir, "seed": ecfg.seed}
    processes = max(1, min(processes, len(cells)))
    if processes == 1:
        _POOL.update(state)
        try:
            hits = [_one_set(c, s) for c, s in cells]
        finally:
            _POOL.clear()
    else:
        with mp.get_context("spawn").Pool(processes, initializer=_init_pool, initargs=(state,)) as pool:
            hits = pool.starmap(_one_set, cells)
    made = len(cells) - sum(hits)
    log.info("corruption cache: %d of %d sets generated (%d processes), the rest were cached", made, len(cells),
             processes)
    return made


def _init_pool(state: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(1)
    _POOL.update(state)


def _one_set(corruption: str, severity: int) -> bool:
    """Make (or find) one cached set; True if it was cached already."""
    from advbn_aug.eval.datasets import corrupted_set

    return corrupted_set(_POOL["images"], corruption, severity, seed=_POOL["seed"], dataset="cifar10",
                         cache_dir=_POOL["cache_dir"], fingerprint=_POOL["fingerprint"])[1]


def run_workers(n: int, run: Callable[..., Any], cfg: Any, kwargs: dict[str, Any]) -> None:
    """Start ``n`` processes, each calling ``run(cfg, **kwargs, workers=1, table=False, progress=False)`` (``run``:
    :func:`~advbn_aug.recipe.core.runner.run_recipe`, a module-level function, so that it reaches the spawned
    processes), and wait for them; raises :class:`WorkerError` naming the ones that failed (the others' runs are
    kept)."""
    threads = max(1, (os.cpu_count() or 1) // n)
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked process
    procs = [ctx.Process(target=_worker, args=(i, run, cfg, kwargs, threads), name=f"recipe-worker-{i}")
             for i in range(n)]
    log.info("starting %d worker processes (%d CPU threads each) on %s", n, threads, kwargs.get("runs_dir"))
    try:  # a SIGTERM (timeout, a job scheduler) stops the workers too, like Ctrl-C, and the table is still written
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: no handler
        previous = None
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():  # the parent was interrupted: stop its workers (their run locks become stale)
                p.terminate()
                p.join()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    failed = {i: p.exitcode for i, p in enumerate(procs) if p.exitcode != 0}
    if failed:
        raise WorkerError(f"worker(s) {sorted(failed)} failed (exit codes {list(failed.values())}; their messages, "
                          "prefixed [worker k], are above): the finished runs are kept; rerun the same command to do "
                          "the missing ones")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}: stopping the workers")


def _worker(i: int, run: Callable[..., Any], cfg: Any, kwargs: dict[str, Any], threads: int) -> None:
    """One worker process: its log lines on stderr prefixed ``[worker i]``; the runs no other process holds."""
    import torch

    # cuBLAS's deterministic mode (the recipe trains under torch.use_deterministic_algorithms); must precede CUDA
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[worker {i}] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    run(cfg, **{**kwargs, "workers": 1, "table": False, "progress": False})

