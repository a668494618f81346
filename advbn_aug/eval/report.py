"""Reports of an evaluation: ``results.json``, a Markdown table ``results.md``, a corruption x severity accuracy
heatmap ``heatmap.png`` and, with a baseline, a bar chart of mean error per corruption ``baseline.png``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from advbn_aug._extras import require
from advbn_aug.eval.metrics import Baseline
from advbn_aug.eval.results import EvalResult

__all__ = ["format_markdown", "plot_heatmap", "plot_baseline_bars", "write_report"]


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def format_markdown(result: EvalResult) -> str:
    """A Markdown summary: headline metrics, then accuracy (%) per corruption and severity, with CE / relative CE
    columns (x 100, as published) when a baseline was used."""
    s = result.summary
    sev = sorted({int(k) for per in result.accuracy.values() for k in per})
    lines = [f"# Corruption robustness: {result.name}", ""]
    lines += [f"- images per set: {result.num_images}", f"- clean accuracy: {_pct(result.clean_accuracy)}%",
              f"- mean corruption accuracy: {_pct(s['mean_corruption_accuracy'])}%",
              f"- mean corruption error: {_pct(s['mean_corruption_error'])}%"]
    ce, rel = s.get("ce", {}), s.get("relative_ce", {})
    if "baseline" in s:
        lines += [f"- mCE (baseline {s['baseline']}): {_num(s.get('mce'))}",
                  f"- relative mCE: {_num(s.get('relative_mce'))}"]
    lines += [f"- note: {n}" for n in result.notes]
    header = ["corruption", *[f"s{k}" for k in sev], "mean"] + (["CE", "rel. CE"] if ce else [])
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c, per in result.accuracy.items():
        row = [c, *[_pct(per.get(k)) for k in sev], _pct(s["per_corruption_accuracy"][c])]
        if ce:
            row += [_num(ce.get(c)), _num(rel.get(c))]
        lines.append("| " + " | ".join(row) + " |")
    per_sev = {int(k): v for k, v in s["per_severity_accuracy"].items()}
    row = ["**mean**", *[_pct(per_sev.get(k)) for k in sev], _pct(s["mean_corruption_accuracy"])]
    if ce:
        row += [_num(s.get("mce")), _num(s.get("relative_mce"))]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _pyplot():
    require("advbn_aug.eval's charts", "eval", "matplotlib")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_heatmap(result: EvalResult, path: str | Path) -> Path:
    """Accuracy (%) heatmap, corruptions as rows and severities as columns, annotated; written as PNG."""
    plt = _pyplot()
    names = list(result.accuracy)
    sev = sorted({int(k) for per in result.accuracy.values() for k in per})
    grid = np.array([[100 * result.accuracy[c].get(k, np.nan) for k in sev] for c in names], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(sev) + 3, 0.38 * len(names) + 1.6))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(sev)), [str(k) for k in sev])
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("severity")
    clean = f", clean {_pct(result.clean_accuracy)}%" if result.clean_accuracy is not None else ""
    ax.set_title(f"{result.name}: accuracy (%){clean}")
    for i in range(len(names)):
        for j in range(len(sev)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < 60 else "black")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_baseline_bars(result: EvalResult, baseline: Baseline, path: str | Path) -> Path:
    """Mean error (%) per corruption of the model next to the baseline's (same severities); written as PNG."""
    plt = _pyplot()
    names, model_err, base_err = [], [], []
    for c, per in result.accuracy.items():
        base_sum = baseline.sum_errors(c, sorted(per))
        if base_sum is None:
            continue
        names.append(c)
        model_err.append(100 * (1 - float(np.mean(list(per.values())))))
        base_err.append(100 * base_sum / len(per))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(names) + 2), 4))
    pos = np.arange(len(names))
    ax.bar(pos - 0.2, model_err, 0.4, label=result.name)
    ax.bar(pos + 0.2, base_err, 0.4, label=baseline.name)
    ax.set_xticks(pos, names, rotation=45, ha="right")
    ax.set_ylabel("mean error over severities (%)")
    mce = result.summary.get("mce")
    ax.set_title(f"{result.name} vs {baseline.name}" + (f" (mCE {100 * mce:.1f})" if mce is not None else ""))
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(result: EvalResult, output_dir: str | Path, baseline: Baseline | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``results.md``, ``heatmap.png`` (and ``baseline.png`` with a baseline) into
    ``output_dir`` (created). Returns ``{kind: path}``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    paths["markdown"].write_text(format_markdown(result))
    paths["heatmap"] = plot_heatmap(result, out / "heatmap.png")
    if baseline is not None:
        paths["baseline"] = plot_baseline_bars(result, baseline, out / "baseline.png")
    return paths
