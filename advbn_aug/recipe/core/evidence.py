"""The evidence matrix: every metric (each evaluation mode's accuracy) x every comparison of two arms, as the mean
of per-seed paired differences with a 95 % Student-t interval, and whether that interval excludes zero.

A metric reads one number from a run's ``result.json`` (``None`` when the run lacks it). Metrics of the
adversarial-BatchNorm route fall back to the clean route for arms trained without AdvBN (they have one route), so
"AdvBN through its adversarial BNs vs standard" is a paired comparison like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Metrics", "Comparisons", "stat", "confidence_interval", "interval_text",
           "arm_metrics", "evidence_matrix", "format_evidence", "get_path", "adv_or_clean"]

Result = dict[str, Any]
# metric key -> (label, reader of one run's value): each benchmark passes its own (cifar10/metrics.py, pacs/table.py)
Metrics = dict[str, tuple[str, Callable[[Result], Any]]]
# comparison key -> (arm, its control, label): the columns of the evidence matrix, in order
Comparisons = dict[str, tuple[str, str, str]]


def stat(values: list[float]) -> dict[str, float | int]:
    """``{"mean", "std" (ddof 1; 0 for one value), "n"}`` of ``values``."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def confidence_interval(s: dict[str, Any], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval for the mean of ``n`` paired differences (a :func:`stat` dict); ``None`` for ``n < 2``."""
    from scipy import stats

    n = int(s["n"])
    if n < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * s["std"] / n ** 0.5
    return s["mean"] - half, s["mean"] + half


def interval_text(name: str, s: dict[str, Any]) -> str:
    """``"<name> +0.51 [95% CI +0.10, +0.92; excludes 0]"`` in points (values are fractions)."""
    ci = confidence_interval(s)
    if ci is None:
        return f"{name} {100 * s['mean']:+.2f} (one seed: no interval)"
    lo, hi = 100 * ci[0], 100 * ci[1]
    verdict = "excludes 0" if lo > 0 or hi < 0 else "includes 0"
    return f"{name} {100 * s['mean']:+.2f} [95% CI {lo:+.2f}, {hi:+.2f}; {verdict}]"


def get_path(r: Result, *path: str) -> float | None:
    """The number at ``r[path[0]][path[1]]...``, or ``None`` when a key is missing or the value is not a number."""
    node: Any = r
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def adv_or_clean(*path: str, clean: tuple[str, ...]) -> Callable[[Result], float | None]:
    """The adversarial-route value for AdvBN runs; the (only) clean-route value for the others."""
    def get(r: Result) -> float | None:
        if r.get("arm", {}).get("advbn"):
            return get_path(r, "extras", *path)
        return get_path(r, *clean)
    get.adv_route = True  # type: ignore[attr-defined]  # shown only when some AdvBN run has the value
    return get


def arm_metrics(by_arm: dict[str, list[Result]], metrics: Metrics) -> dict[str, dict[str, dict[str, Any]]]:
    """``{arm: {metric: stat over the seeds that have it}}`` (metrics no seed has are left out)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    # an adversarial-route metric without any AdvBN value would only repeat the clean route's numbers
    shown = {key for key, (_, read) in metrics.items() if not getattr(read, "adv_route", False)
             or any(read(r) is not None for runs in by_arm.values() for r in runs if r.get("arm", {}).get("advbn"))}
    for arm, runs in by_arm.items():
        row = {}
        for key, (_, read) in metrics.items():
            vals = [v for v in (read(r) for r in runs) if v is not None] if key in shown else []
            if vals:
                row[key] = stat(vals)
        out[arm] = row
    return out


def evidence_matrix(by_arm: dict[str, list[Result]], comparisons: Comparisons,
                    metrics: Metrics) -> dict[str, dict[str, dict[str, Any]]]:
    """``{comparison: {metric: {mean, std, n, seeds, lo, hi, excludes_zero}}}`` of per-seed differences
    ``a - b`` over the seeds where both arms have the metric (comparisons: ``key -> (a, b, label)``)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, (a, b, _) in comparisons.items():
        ra, rb = ({r["seed"]: r for r in by_arm.get(x, [])} for x in (a, b))
        for m, (_, read) in metrics.items():
            pairs = [(s, read(ra[s]), read(rb[s])) for s in sorted(set(ra) & set(rb))]
            diffs = [(s, va - vb) for s, va, vb in pairs if va is not None and vb is not None]
            if not diffs:
                continue
            st = stat([d for _, d in diffs])
            ci = confidence_interval(st)
            cell: dict[str, Any] = {**st, "seeds": [s for s, _ in diffs]}
            if ci is not None:
                cell.update(lo=ci[0], hi=ci[1], excludes_zero=bool(ci[0] > 0 or ci[1] < 0))
            out.setdefault(key, {})[m] = cell
    return out


def _cell(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    if "lo" not in c:
        return f"{100 * c['mean']:+.2f} (n=1)"
    mark = " **≠0**" if c["excludes_zero"] else ""
    return f"{100 * c['mean']:+.2f} [{100 * c['lo']:+.2f}, {100 * c['hi']:+.2f}] (n={c['n']}){mark}"


def format_evidence(doc: dict[str, Any], comparisons: Comparisons, metrics: Metrics,
                    title: str = "Evaluation modes") -> list[str]:
    """Markdown lines: the per-arm means of every evaluation mode, then the paired-difference matrix."""
    modes, ev = doc.get("modes", {}), doc.get("evidence", {})
    keys = [m for m in metrics if any(m in row for row in modes.values())]
    if not keys:
        return []
    lines = [f"## {title} (mean ± std over seeds, %)", "",
             "| metric | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for m in keys:
        cells = [f"{100 * row[m]['mean']:.2f}" + (f" ± {100 * row[m]['std']:.2f}" if row[m]["n"] > 1 else "")
                 + f" ({row[m]['n']})" if m in row else "-" for row in modes.values()]
        lines.append(f"| {metrics[m][0]} | " + " | ".join(cells) + " |")
    cols = [k for k in comparisons if k in ev]
    if cols:
        lines += ["", "## Paired differences (points; mean [95% t-interval] over seeds; **≠0**: the interval "
                  "excludes zero; plotted in `evidence.png`)", "",
                  "| metric | " + " | ".join(comparisons[k][2] for k in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for m in keys:
            lines.append(f"| {metrics[m][0]} | " + " | ".join(_cell(ev[k].get(m)) for k in cols) + " |")
    return lines
