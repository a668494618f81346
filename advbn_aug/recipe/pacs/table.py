"""The PACS result table: per target domain and their mean, through the clean BatchNorms and (AdvBN arms) the
adversarial ones, for the final weights and (runs trained with ``ema_decay``) their moving average, mean ± std over
seeds, and every metric x every comparison as paired differences with 95 % t-intervals (:mod:`.evidence`);
``results.json`` / ``results.md`` / ``results.png`` / ``evidence.png`` / ``sha256.txt``.

Which weights are the headline (final or EMA) is decided by :func:`pacs_headline` from the standard arm's runs
alone, before any arm is compared: the one with the smaller seed spread of the mean target accuracy."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advbn_aug.recipe.core.config import ArmConfig
from advbn_aug.recipe.core.evidence import (
    Metrics,
    adv_or_clean,
    arm_metrics,
    evidence_matrix,
    format_evidence,
    get_path,
    stat,
)
from advbn_aug.recipe.core.plot import save_chart
from advbn_aug.recipe.core.table import (
    cost_cells,
    delta_cell,
    fmt_stat,
    group_by_arm,
    missing_runs,
    model_lines,
    run_facts,
    unpaired_note,
    write_table_files,
)
from advbn_aug.recipe.pacs.config import PACS_COMPARISONS, PACSConfig, pacs_prefix_names

__all__ = ["pacs_metrics", "aggregate_pacs", "format_pacs_table", "short_table_pacs", "plot_pacs", "pacs_headline",
           "pacs_plot_rows", "HEADLINE_RULE"]

# the two weights of a run: metric key prefix, result.json location of the clean route, label
_WEIGHTS = (("", (), ""), ("ema_", ("ema",), "EMA, "))
HEADLINE_RULE = ("Headline weights, fixed before any two arms are compared: of the final weights and their "
                 "exponential moving average (EMA), the ones whose **standard** arm varies less over seeds (sample "
                 "std of its mean target accuracy over the seeds that have both; a tie goes to the final weights). "
                 "Nothing but the standard arm's runs enters the choice; both are reported for every arm.")


def pacs_metrics(targets: Sequence[str], val: bool = False) -> Metrics:
    """Per target domain and the mean, clean route then adversarial route (the clean one for arms without AdvBN),
    and (leave-one-out) the sources' crossval accuracy; for the final weights, then (``ema_`` keys) their moving
    average (runs without one have no value)."""
    m: Metrics = {}
    for prefix, at, wlabel in _WEIGHTS:
        for route in ("", "_adv"):
            for d in [*targets, "mean"]:
                path = (*at, "mean_acc") if d == "mean" else (*at, "acc", d)
                label = f"{wlabel}{d.replace('_', ' ')}{', adversarial BN' if route else ''}"
                # the adversarial route of the average is stored in the adv_route mode, under "ema"
                m[f"{prefix}{d}{route}"] = (label, adv_or_clean("adv_route", *path, clean=path) if route
                                            else lambda r, p=path: get_path(r, *p))
        if val:
            m[f"{prefix}val"] = (f"{wlabel}source crossval (not used for selection)",
                                 lambda r, p=(*at, "val_acc"): get_path(r, *p))
    return m


def pacs_plot_rows(metrics: Metrics, targets: Sequence[str]) -> list[str]:
    """The rows of ``evidence.png``: every metric, less the mean over targets when there is one target (leave-one-out:
    it would repeat that target's row)."""
    return [k for k in metrics if len(targets) > 1 or not k.removeprefix("ema_").startswith("mean")]


def pacs_headline(standard_runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The headline weights by :data:`HEADLINE_RULE`, from the **standard** arm's runs only (others are ignored):
    ``{"rule", "weights": "final" | "ema" | None (undecided: fewer than two seeds with both), "seeds", "std":
    {"final", "ema"}}``."""
    runs = sorted((r for r in standard_runs if r.get("arm", {}).get("name") == "standard"
                   and get_path(r, "mean_acc") is not None and get_path(r, "ema", "mean_acc") is not None),
                  key=lambda r: r["seed"])
    out: dict[str, Any] = {"rule": HEADLINE_RULE, "seeds": [r["seed"] for r in runs], "weights": None}
    if len(runs) < 2:
        return out
    spread = {"final": stat([r["mean_acc"] for r in runs])["std"],
              "ema": stat([r["ema"]["mean_acc"] for r in runs])["std"]}
    out.update(std=spread, weights="ema" if spread["ema"] < spread["final"] else "final")
    return out


def aggregate_pacs(results: list[dict[str, Any]], cfg: PACSConfig, output: Path, arm_order: Sequence[str],
                   commands: Sequence[str] = (), jobs: Sequence[tuple[ArmConfig, int]] = ()) -> dict[str, Any]:
    """Write the table files in ``output`` from run results; returns the ``results.json`` document."""
    by_arm, order = group_by_arm(results, arm_order)
    headline = pacs_headline(by_arm.get("standard", []))  # first, from the standard arm alone
    metrics = pacs_metrics(cfg.targets(), val=cfg.protocol == "leave_one_out")
    modes = arm_metrics({a: by_arm[a] for a in order}, metrics)
    table = {a: {"seeds": sorted(r["seed"] for r in by_arm[a]), "description": by_arm[a][0]["arm"]["description"],
                 "advbn": bool(by_arm[a][0]["arm"].get("advbn")), **modes[a], **run_facts(by_arm[a])}
             for a in order}
    doc = {"benchmark": "pacs", "task": cfg.task, "targets": cfg.targets(), "config": cfg.to_dict(), "arms": table,
           "headline": headline, "missing": missing_runs(results, jobs), "modes": modes,
           "evidence": evidence_matrix(by_arm, PACS_COMPARISONS, metrics),
           "runs": results, "written": _dt.datetime.now().isoformat(timespec="seconds")}
    write_table_files(output, doc, format_pacs_table(doc, commands), by_arm, order, plot_pacs, PACS_COMPARISONS,
                      metrics, plot_rows=pacs_plot_rows(metrics, cfg.targets()))
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


def _headline_lines(doc: dict[str, Any]) -> list[str]:
    h = doc.get("headline")
    if not h or not any("ema_mean" in row for row in doc["arms"].values()):
        return []
    if h["weights"] is None:
        verdict = (f"**not decided yet**: the standard arm has both weights in {len(h['seeds'])} seed(s), the rule "
                   "needs two or more; until then the final weights come first")
    else:
        verdict = (f"standard arm, seeds {', '.join(map(str, h['seeds']))}: std of the mean target accuracy "
                   f"{100 * h['std']['final']:.2f} (final) vs {100 * h['std']['ema']:.2f} (EMA) points → headline: "
                   f"**{'EMA' if h['weights'] == 'ema' else 'final'} weights**")
    return ["## Headline weights", "", f"{h['rule']} Here: {verdict}.", ""]


def _weights_table(doc: dict[str, Any], prefix: str, title: str) -> list[str]:
    targets, arms = doc["targets"], doc["arms"]
    cols = [f"{prefix}{c}" for c in (*targets, "mean")]
    val = any(f"{prefix}val" in row for row in arms.values())
    rows = [(a, row) for a, row in arms.items() if f"{prefix}mean" in row]
    if not rows:
        return []
    lines = [f"### {title}", "",
             "| arm | seeds | " + " | ".join(c.removeprefix(prefix).replace("_", " ") for c in cols)
             + " | mean, adv BN | Δ mean vs standard" + (" | source crossval" if val else "")
             + (" | train s/run | train cost vs standard | code |" if not prefix else " |"),
             "|---|---|" + "---|" * (len(cols) + 2 + val + (3 if not prefix else 0))]
    for a, row in rows:
        m = row[f"{prefix}mean"]
        dm = delta_cell(arms, a, f"{prefix}mean")
        adv = fmt_stat(row.get(f"{prefix}mean_adv")) if row.get("advbn") else "-"
        lines.append(f"| {a} | {m['n']} | " + " | ".join(fmt_stat(row.get(c)) for c in cols) + f" | {adv} | {dm}"
                     + (f" | {fmt_stat(row.get(f'{prefix}val'))}" if val else "")
                     + (f" | {cost_cells(arms, row)} |" if not prefix else " |"))
    return lines + unpaired_note(arms, [a for a, _ in rows], f"{prefix}mean") + [""]


def format_pacs_table(doc: dict[str, Any], commands: Sequence[str] = ()) -> str:
    arms = doc["arms"]
    decay = doc["config"].get("ema_decay")
    tables = {"final": _weights_table(doc, "", "Final weights (the model after the last step)"),
              "ema": _weights_table(doc, "ema_", f"Weight average (EMA, decay {decay}; the same runs)")}
    first = "ema" if (doc.get("headline") or {}).get("weights") == "ema" else "final"
    lines = _header(doc) + _headline_lines(doc) + tables[first] + tables["ema" if first == "final" else "final"]
    metrics = pacs_metrics(doc["targets"], val=any("val" in row for row in doc["modes"].values()))
    lines += format_evidence(doc, PACS_COMPARISONS, metrics, title="Every metric")
    missing = doc.get("missing", [])
    lines += ["", f"Runs still missing ({len(missing)}): " + (", ".join(missing) if missing else "none") + ".",
              *model_lines(arms)]
    if commands:
        lines += ["", "## Commands", "", "```"] + list(commands) + ["```"]
    return "\n".join(lines) + "\n"


def short_table_pacs(doc: dict[str, Any]) -> str:
    arms = doc.get("arms", {})
    cols = [*doc.get("targets", []), "mean", "mean_adv"]
    cols += ["ema_mean", "ema_mean_adv"] if any("ema_mean" in row for row in arms.values()) else []
    rows = [f"{'arm':<14} {'seeds':>5} " + " ".join(f"{c[:14]:>14}" for c in cols)]
    for a, row in arms.items():
        cells = [fmt_stat(row.get(c)) if not c.endswith("mean_adv") or row.get("advbn") else "-" for c in cols]
        rows.append(f"{a:<14} {len(row['seeds']):>5} " + " ".join(f"{c:>14}" for c in cells))
    return "\n".join(rows)


def plot_pacs(doc: dict[str, Any], path: Path) -> Path:
    """Grouped bars: accuracy per target domain and the mean, per arm (AdvBN arms once per BatchNorm route)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = [*doc["targets"], "mean"]
    series = []
    for prefix, _, wlabel in _WEIGHTS:
        series += [(a, prefix, "", f"{a}{f' ({wlabel[:-2]})' if prefix else ''}") for a, row in doc["arms"].items()
                   if f"{prefix}mean" in row]
        series += [(a, prefix, "_adv", f"{a} ({wlabel}adv BN)") for a, row in doc["arms"].items()
                   if row.get("advbn") and f"{prefix}mean_adv" in row]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cols) * len(series) / 4), 4.5))
    width = 0.8 / len(series)
    for k, (a, prefix, route, label) in enumerate(series):
        row = doc["arms"][a]
        keys = [prefix + c + route for c in cols]
        vals = [100 * row[c]["mean"] if c in row else np.nan for c in keys]
        errs = [100 * row[c]["std"] if c in row else 0 for c in keys]
        ax.bar(np.arange(len(cols)) + (k - (len(series) - 1) / 2) * width, vals, width, yerr=errs, capsize=2,
               label=label, hatch="//" if route else None, alpha=0.6 if prefix else 1.0)
    ax.set_xticks(range(len(cols)), [c.replace("_", " ") for c in cols])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"PACS {doc['task']} ({doc['config']['img_size']} px; mean ± std over seeds)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_chart(fig, path, dpi=110)
    return path
