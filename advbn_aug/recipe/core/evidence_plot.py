"""``evidence.png``: the evidence matrix as a forest plot, one panel per comparison of two arms, one row per metric:
the mean paired difference (points) with its 95 % t-interval, a line at zero, filled where the interval excludes
zero, hollow where it does not, a cross where only one seed exists (no interval)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advbn_aug.recipe.core.plot import save_chart

__all__ = ["plot_evidence", "panel_seeds"]


def panel_seeds(cells: dict[str, dict[str, Any]], rows: Sequence[str]) -> str:
    """A panel's number of pairs: ``n = 5 seeds``, or ``n = 1-5 seeds`` when rows differ (each row with fewer pairs
    than the most is labelled in the panel)."""
    ns = [cells[m]["n"] for m in rows if m in cells]
    lo, hi = min(ns), max(ns)
    return f"n = {hi} seed{'' if hi == 1 else 's'}" if lo == hi else f"n = {lo}-{hi} seeds by row"


def plot_evidence(evidence: dict[str, dict[str, dict[str, Any]]], comparisons: dict[str, tuple[str, str, str]],
                  labels: dict[str, str], path: Path, metrics: Sequence[str] | None = None) -> Path | None:
    """Write the forest plot of ``evidence`` (:func:`~advbn_aug.recipe.core.evidence.evidence_matrix`) to ``path``.

    ``comparisons``: ``key -> (arm, control, title)``, in panel order (those without evidence are left out);
    ``labels``: metric key -> row label; ``metrics``: the rows, in order (default: every labelled metric). Returns
    ``path``, or ``None`` when no comparison has evidence yet (nothing is written).
    """
    keys = [k for k in comparisons if evidence.get(k)]
    if not keys:
        return None
    rows = [m for m in (metrics if metrics is not None else list(labels)) if any(m in evidence[k] for k in keys)]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(keys))
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 0.32 * len(rows) * nrows + 1.2 * nrows),
                             sharey=True, squeeze=False)
    ys = list(range(len(rows)))[::-1]
    for ax, key in zip(axes.flat, keys):
        cells = evidence[key]
        for y, m in zip(ys, rows):
            c = cells.get(m)
            if c is None:
                continue
            mean = 100 * c["mean"]
            if "lo" in c:
                lo, hi = 100 * c["lo"], 100 * c["hi"]
                colour = "tab:blue" if mean >= 0 else "tab:red"
                ax.errorbar(mean, y, xerr=[[mean - lo], [hi - mean]], fmt="o", color=colour, capsize=3, ms=5,
                            mfc=colour if c["excludes_zero"] else "white")
            else:
                ax.plot(mean, y, "x", color="grey")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{comparisons[key][2]} ({panel_seeds(cells, rows)})", fontsize=9)
        top = max(cells[m]["n"] for m in rows if m in cells)
        for y, m in zip(ys, rows):    # rows with fewer pairs than the panel's most say how many
            if m in cells and cells[m]["n"] < top:
                ax.annotate(f"n={cells[m]['n']}", (1.0, y), xycoords=("axes fraction", "data"), xytext=(-2, 0),
                            textcoords="offset points", ha="right", va="center", fontsize=6, color="dimgrey")
        ax.set_xlabel("paired difference (points)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_yticks(ys, [labels.get(m, m) for m in rows])
    fig.suptitle("mean paired difference with 95 % t-interval (filled: excludes 0)", fontsize=10)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / height))     # room for the suptitle
    save_chart(fig, path, dpi=100)
    return path
