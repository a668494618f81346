"""The CIFAR-10 corruption cache built before the recipe's worker processes start: every (corruption, severity) set
of the evaluation images generated once, by a pool of processes, exactly as the evaluation would read it."""

from __future__ import annotations

import logging
import multiprocessing as mp
from typing import Any

import numpy as np

log = logging.getLogger("advbn_aug.recipe")

__all__ = ["build_corruption_cache"]

_POOL: dict[str, Any] = {}  # a cache-pool process's images, fingerprint, cache folder and seed


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
