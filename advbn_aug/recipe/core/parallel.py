"""Running the recipe with several worker processes on one machine (``advbn-aug recipe cifar10 --workers N``, the
GPU table's ``--preset gpu``): the benchmark prepares what the workers share first (``Benchmark.prepare_workers``,
e.g. the CIFAR-10 corruption cache); then N processes share one runs folder through the per-run locks
(:mod:`advbn_aug.recipe.core.lock`), each training and evaluating the (arm, seed) runs no other holds; the parent
writes the table when they are done."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)

__all__ = ["run_workers", "WorkerError"]


class WorkerError(RuntimeError):
    """One or more worker processes failed; the finished runs are kept and the table holds them."""


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

