"""Data helpers every benchmark shares."""

from __future__ import annotations

import numpy as np

__all__ = ["class_balanced_subset"]


def class_balanced_subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` items of ``x`` (and their labels ``y``) with (as far as possible) equal class counts, in a seeded random
    order; all of them, shuffled, when ``n`` is ``None`` or at least ``len(x)``."""
    rng = np.random.default_rng(seed)
    if n is None or n >= len(x):
        perm = rng.permutation(len(x))
        return x[perm], y[perm]
    classes = np.unique(y)
    per = n // len(classes)
    picks = [rng.permutation(np.flatnonzero(y == c))[:per] for c in classes]
    chosen = np.concatenate(picks)
    rest = np.setdiff1d(np.arange(len(x)), chosen)
    chosen = np.concatenate([chosen, rng.permutation(rest)[: n - len(chosen)]])
    chosen = rng.permutation(chosen)
    return x[chosen], y[chosen]
