"""The PACS result table: per target domain and their mean, through the clean BatchNorms and (AdvBN arms) the
adversarial ones, mean ± std over seeds, and every metric x every comparison as paired differences with 95 %
t-intervals (:mod:`.evidence`); ``results.json`` / ``results.md`` / ``results.png`` / ``sha256.txt``."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ArmConfig
from .evidence import Metrics, adv_or_clean, arm_metrics, evidence_matrix, format_evidence, get_path
from .pacs_config import PACS_COMPARISONS, PACSConfig, pacs_prefix_names
from .plot import save_chart
from .table import cost_cells, fmt_stat, group_by_arm, missing_runs, model_lines, run_facts, write_table_files

__all__ = ["pacs_metrics", "aggregate_pacs", "format_pacs_table", "short_table_pacs", "plot_pacs"]


def pacs_metrics(targets: Sequence[str], val: bool = False) -> Metrics:
    """Per target domain and the mean, clean route then adversarial route (the clean one for arms without AdvBN),
    and (leave-one-out) the sources' crossval accuracy."""
    m: Metrics = {}
    for route in ("", "_adv"):
        for d in [*targets, "mean"]:
            path = ("mean_acc",) if d == "mean" else ("acc", d)
            label = f"{d.replace('_', ' ')}{', adversarial BN' if route else ''}"
            m[f"{d}{route}"] = (label, adv_or_clean("adv_route", *path, clean=path) if route
                                else lambda r, p=path: get_path(r, *p))
    if val:
        m["val"] = ("source crossval (not used for selection)", lambda r: get_path(r, "val_acc"))
    return m


def aggregate_pacs(results: list[dict[str, Any]], cfg: PACSConfig, output: Path, arm_order: Sequence[str],
                   commands: Sequence[str] = (), jobs: Sequence[tuple[ArmConfig, int]] = ()) -> dict[str, Any]:
    """Write the table files in ``output`` from run results; returns the ``results.json`` document."""
    by_arm, order = group_by_arm(results, arm_order)
    metrics = pacs_metrics(cfg.targets(), val=cfg.protocol == "leave_one_out")
    modes = arm_metrics({a: by_arm[a] for a in order}, metrics)
    table = {a: {"seeds": sorted(r["seed"] for r in by_arm[a]), "description": by_arm[a][0]["arm"]["description"],
                 "advbn": bool(by_arm[a][0]["arm"].get("advbn")), **modes[a], **run_facts(by_arm[a])}
             for a in order}
    doc = {"benchmark": "pacs", "task": cfg.task, "targets": cfg.targets(), "config": cfg.to_dict(), "arms": table,
           "missing": missing_runs(results, jobs), "modes": modes,
           "evidence": evidence_matrix(by_arm, PACS_COMPARISONS, metrics),
           "runs": results, "written": _dt.datetime.now().isoformat(timespec="seconds")}
    write_table_files(output, doc, format_pacs_table(doc, commands), by_arm, order, plot_pacs, PACS_COMPARISONS,
                      metrics)
    return doc


def _header(doc: dict[str, Any]) -> list[str]:
    cfg = PACSConfig.from_dict(doc["config"])
    train = (f"fine-tuned on all {cfg.domain} images" if cfg.protocol == "single_source" else
             "fine-tuned on the official train lists of " + ", ".join(
                 d for d in ("photo", "art_painting", "cartoon", "sketch") if d != cfg.domain))
    kind = "single-source" if cfg.protocol == "single_source" else "leave-one-domain-out"
    return [f"# PACS {kind}: {cfg.task}", "",
            f"EfficientNet-Lite0 (ImageNet weights) at **{cfg.img_size} px** (train and test), {train}"
            f"{'' if cfg.train_subset is None else f' (subset of {cfg.train_subset})'}; tested on "
            f"{'every image' if cfg.test_images is None else f'{cfg.test_images} images'} of "
            f"{', '.join(cfg.targets())}. Frozen in every arm: {', '.join(pacs_prefix_names(cfg.advbn['layer']))} "
            f"(AdvBN after `{cfg.advbn['layer']}`: eps {cfg.advbn.get('eps')}, step {cfg.advbn.get('step_size')}, "
            f"{cfg.advbn.get('steps')} steps). {cfg.steps} steps x {cfg.batch_size} images, SGD lr {cfg.lr} "
            f"(x{cfg.decay_rate} after {cfg.decay_at:.0%}), random resized crop (area {cfg.crop_scale}) + flip. "
            "Accuracy in %, mean ± std over seeds; AdvBN arms also through their adversarial BatchNorms.", ""]


def format_pacs_table(doc: dict[str, Any], commands: Sequence[str] = ()) -> str:
    targets, arms = doc["targets"], doc["arms"]
    cols = [*targets, "mean"]
    lines = _header(doc) + [
        "| arm | seeds | " + " | ".join(c.replace("_", " ") for c in cols) + " | mean, adv BN | Δ mean vs standard | "
        "train s/run | train cost vs standard | code |", "|---|---|" + "---|" * (len(cols) + 5)]
    base = arms.get("standard", {}).get("mean")
    for a, row in arms.items():
        dm = f"{100 * (row['mean']['mean'] - base['mean']):+.2f}" if base and "mean" in row and a != "standard" else "-"
        adv = fmt_stat(row.get("mean_adv")) if row.get("advbn") else "-"
        lines.append(f"| {a} | {len(row['seeds'])} | " + " | ".join(fmt_stat(row.get(c)) for c in cols)
                     + f" | {adv} | {dm} | {cost_cells(arms, row)} |")
    metrics = pacs_metrics(targets, val="val" in next(iter(doc["modes"].values()), {}))
    lines += [""] + format_evidence(doc, PACS_COMPARISONS, metrics, title="Every metric")
    missing = doc.get("missing", [])
    lines += ["", f"Runs still missing ({len(missing)}): " + (", ".join(missing) if missing else "none") + ".",
              *model_lines(arms)]
    if commands:
        lines += ["", "## Commands", "", "```"] + list(commands) + ["```"]
    return "\n".join(lines) + "\n"


def short_table_pacs(doc: dict[str, Any]) -> str:
    cols = [*doc.get("targets", []), "mean", "mean_adv"]
    rows = [f"{'arm':<14} {'seeds':>5} " + " ".join(f"{c[:14]:>14}" for c in cols)]
    for a, row in doc.get("arms", {}).items():
        cells = [fmt_stat(row.get(c)) if c != "mean_adv" or row.get("advbn") else "-" for c in cols]
        rows.append(f"{a:<14} {len(row['seeds']):>5} " + " ".join(f"{c:>14}" for c in cells))
    return "\n".join(rows)


def plot_pacs(doc: dict[str, Any], path: Path) -> Path:
    """Grouped bars: accuracy per target domain and the mean, per arm (AdvBN arms once per BatchNorm route)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = [*doc["targets"], "mean"]
    series = [(a, "", a) for a in doc["arms"]]
    series += [(a, "_adv", f"{a} (adv BN)") for a, row in doc["arms"].items() if row.get("advbn")]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cols) * len(series) / 4), 4.5))
    width = 0.8 / len(series)
    for k, (a, route, label) in enumerate(series):
        row = doc["arms"][a]
        vals = [100 * row[c + route]["mean"] if c + route in row else np.nan for c in cols]
        errs = [100 * row[c + route]["std"] if c + route in row else 0 for c in cols]
        ax.bar(np.arange(len(cols)) + (k - (len(series) - 1) / 2) * width, vals, width, yerr=errs, capsize=2,
               label=label, hatch="//" if route else None)
    ax.set_xticks(range(len(cols)), [c.replace("_", " ") for c in cols])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"PACS {doc['task']} ({doc['config']['img_size']} px; mean ± std over seeds)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_chart(fig, path, dpi=110)
    return path
