"""``results.png``: clean vs corruption accuracy per arm, and accuracy per corruption; :func:`save_chart`, how every
recipe chart is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_table(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = doc["arms"]
    names = list(arms)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    xs = np.arange(len(names))
    for off, (key, label) in zip((-0.2, 0.2), (("clean_acc_jpeg", "clean (JPEG test)"), ("mca", "mCA"))):
        means = [100 * arms[a][key]["mean"] if key in arms[a] else np.nan for a in names]
        stds = [100 * arms[a][key]["std"] if key in arms[a] else 0 for a in names]
        axes[0].bar(xs + off, means, 0.4, yerr=stds, capsize=3, label=label)
    axes[0].set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
    axes[0].set_ylabel("accuracy (%)")
    vals = [100 * arms[a][k]["mean"] for a in names for k in ("clean_acc_jpeg", "mca") if k in arms[a]]
    if vals:
        axes[0].set_ylim(max(0, min(vals) - 10), min(100, max(vals) + 5))
    axes[0].legend()
    axes[0].set_title("clean vs corruption accuracy (mean ± std over seeds)")
    corr = sorted({c for a in names for c in arms[a]["per_corruption"]})
    for a in names:
        axes[1].plot(range(len(corr)), [100 * arms[a]["per_corruption"][c]["mean"] if c in arms[a]["per_corruption"]
                                        else np.nan for c in corr], marker="o", ms=3, label=a)
    axes[1].set_xticks(range(len(corr)), corr, rotation=60, ha="right", fontsize=7)
    axes[1].set_ylabel("accuracy (%)")
    axes[1].set_title("per corruption (mean over severities)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_chart(fig, path, dpi=110)
    return path


def save_chart(fig: Any, path: Path, dpi: int) -> None:
    """Write a matplotlib chart as a 256-colour PNG and close it: charts have few colours, so this is about 3x smaller
    than matplotlib's RGBA PNG at no visible loss (the committed charts travel with the repository)."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    image = Image.open(buf).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
