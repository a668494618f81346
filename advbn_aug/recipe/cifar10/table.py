"""The CIFAR-10 result table: per-arm statistics over seeds, the hypotheses (paired by seed, with Student-t
intervals), and ``results.json`` / ``results.md`` / ``results.png`` / ``sha256.txt``
(:mod:`~advbn_aug.recipe.core.table` writes them)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advbn_aug.recipe.cifar10.config import HYPOTHESES, RecipeConfig, prefix_names
from advbn_aug.recipe.cifar10.decoded import DECODED
from advbn_aug.recipe.cifar10.generated_sets import modes_and_evidence, set_lines
from advbn_aug.recipe.cifar10.metrics import CIFAR10_METRICS, EVIDENCE_PLOT_METRICS
from advbn_aug.recipe.cifar10.stylized_sets import STYLIZED
from advbn_aug.recipe.core.config import ArmConfig
from advbn_aug.recipe.core.evidence import format_evidence
from advbn_aug.recipe.core.evidence import interval_text as _interval_text
from advbn_aug.recipe.core.evidence import stat as _stat
from advbn_aug.recipe.core.plot import plot_table
from advbn_aug.recipe.core.table import (
    cost_cells,
    delta_cell,
    fmt_stat,
    group_by_arm,
    missing_runs,
    model_lines,
    run_devices,
    run_facts,
    unpaired_note,
    write_table_files,
)

__all__ = ["aggregate", "format_table", "short_table"]

_GENERATED = (STYLIZED, DECODED)  # modes on sets made per machine: compared within one set, in doc[f"{extra}_sets"]

_COLUMNS = (("clean_acc_jpeg", "clean JPEG test"), ("clean_acc_lossless", "clean lossless-1k"),
            ("jpeg_gap", "lossless - JPEG (same 1k)"), ("mca", "mCA (all evaluated)"),
            ("mca_benchmark15", "mCA (benchmark 15)"))


def aggregate(results: list[dict[str, Any]], cfg: RecipeConfig, output: Path, arm_order: Sequence[str],
              commands: Sequence[str] = (), jobs: Sequence[tuple[ArmConfig, int]] = ()) -> dict[str, Any]:
    """Write ``results.json``, ``results.md``, ``results.png``, ``evidence.png`` (and ``sha256.txt``) in ``output``
    from run results."""
    by_arm, order = group_by_arm(results, arm_order)
    table: dict[str, Any] = {}
    for a in order:
        rs = sorted(by_arm[a], key=lambda r: r["seed"])
        row: dict[str, Any] = {"seeds": [r["seed"] for r in rs], "description": rs[0]["arm"].get("description", "")}
        for key, _ in _COLUMNS:
            vals = [r[key] for r in rs if r.get(key) is not None]
            if vals:
                row[key] = _stat(vals)
        corr = sorted({c for r in rs for c in r["per_corruption"]})
        row["per_corruption"] = {c: _stat([r["per_corruption"][c] for r in rs if c in r["per_corruption"]])
                                 for c in corr}
        row.update(run_facts(rs))
        table[a] = row
    checks = _hypotheses(table, by_arm)
    missing = missing_runs(results, jobs)
    # Stylized and decoded numbers only within one generated set (recipe.cifar10.generated_sets)
    modes, evidence, sets = modes_and_evidence({a: by_arm[a] for a in order}, HYPOTHESES, _GENERATED)
    doc = {"benchmark": "cifar10", "config": cfg.to_dict(), "arms": table, "hypotheses": checks, "missing": missing,
           **({"devices": devices} if (devices := run_devices(results)) else {}),
           "modes": modes, "evidence": evidence, **{f"{extra}_sets": record for extra, record in sets.items()},
           "runs": [{k: v for k, v in r.items() if k != "accuracy"} for r in results],
           "written": _dt.datetime.now().isoformat(timespec="seconds")}
    write_table_files(output, doc, format_table(doc, commands), by_arm, order, plot_table, HYPOTHESES,
                      CIFAR10_METRICS, plot_rows=EVIDENCE_PLOT_METRICS)
    return doc


def _delta(table: dict[str, Any], a: str, b: str, key: str) -> float | None:
    if a in table and b in table and key in table[a] and key in table[b]:
        return table[a][key]["mean"] - table[b][key]["mean"]
    return None


def _paired(by_arm: dict[str, list[dict[str, Any]]], a: str, b: str) -> dict[str, Any] | None:
    """Per-seed differences ``a - b`` over the seeds both arms finished (the same seed means the same batches and
    augmentation draws, so the pairing removes most of the batch-order noise)."""
    ra, rb = ({r["seed"]: r for r in by_arm.get(x, [])} for x in (a, b))
    seeds = sorted(set(ra) & set(rb))
    if not seeds:
        return None
    d_mca = [ra[s]["mca"] - rb[s]["mca"] for s in seeds]
    d_clean = [ra[s]["clean_acc_jpeg"] - rb[s]["clean_acc_jpeg"] for s in seeds]
    return {"seeds": seeds, "delta_mca": _stat(d_mca), "delta_clean_jpeg": _stat(d_clean),
            "mca_up": sum(d > 0 for d in d_mca)}


def _hypotheses(table: dict[str, Any], by_arm: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (a, b, _) in HYPOTHESES.items():
        d_mca, d_clean = _delta(table, a, b, "mca"), _delta(table, a, b, "clean_acc_jpeg")
        if d_mca is None:
            continue
        holds = d_mca > 0
        if key == "advbn_vs_standard":
            holds = holds and d_clean is not None and d_clean >= -0.005
        out[key] = {"delta_mca": d_mca, "delta_clean_jpeg": d_clean, "holds": bool(holds)}
        paired = _paired(by_arm or {}, a, b)
        if paired is not None:
            out[key]["paired"] = paired
    return out


def _paired_text(v: dict[str, Any]) -> str:
    p = v.get("paired")
    if not p:
        return ""
    n = len(p["seeds"])
    return (f" Paired by seed ({n} seed{'s' if n != 1 else ''}): {_interval_text('Δ mCA', p['delta_mca'])}, "
            f"{_interval_text('Δ clean', p['delta_clean_jpeg'])}; mCA higher in {p['mca_up']} of {n} seeds.")


def format_table(doc: dict[str, Any], commands: Sequence[str] = ()) -> str:
    cfg = doc["config"]
    lines = ["# CIFAR-10 recipe: AdvBN and image-space augmentation", "",
             f"Model {cfg['model']} (pretrained; {', '.join(prefix_names(cfg['advbn']['layer']))} frozen in every "
             f"arm); {cfg['steps']} steps x "
             f"{cfg['batch_size']} images, SGD lr {cfg['lr']} (x{cfg['decay_rate']} after {cfg['decay_at']:.0%}), "
             f"training subset {cfg['train_subset'] or 'all'}; corruptions: {cfg['eval_images']} test images, "
             f"{'all 19' if cfg['corruptions'] == 'all' else len(cfg['corruptions'])} corruptions x severities "
             f"{cfg['severities']}. Accuracies in %, mean ± std over seeds.", "",
             *([f"Trained on: {', '.join(f'{n} ({k} runs)' for n, k in doc['devices'].items())}.", ""]
               if doc.get("devices") else []),
             "| arm | seeds | " + " | ".join(t for _, t in _COLUMNS) + " | Δ mCA vs standard | train s/run | "
             "train cost vs standard | code |",
             "|---|---|" + "---|" * len(_COLUMNS) + "---|---|---|---|"]
    arms = doc["arms"]
    for a, row in arms.items():
        cells = [fmt_stat(row.get(k), signed=k == "jpeg_gap") for k, _ in _COLUMNS]
        lines.append(f"| {a} | {len(row['seeds'])} | " + " | ".join(cells) + f" | {delta_cell(arms, a, 'mca')} | "
                     f"{cost_cells(arms, row)} |")
    lines += unpaired_note(arms, list(arms), "mca")
    lines += ["", "## Hypotheses", ""]
    h = doc["hypotheses"]
    for key, (_, _, label) in HYPOTHESES.items():
        if key not in h:
            continue
        v = h[key]
        head = (f"- {label}: Δ mCA {100 * v['delta_mca']:+.2f}, Δ clean (JPEG test) "
                f"{100 * v['delta_clean_jpeg']:+.2f} → ")
        if key == "advbn_vs_standard":
            head += f"hypothesis (mCA up, clean cost ≤ 0.5) **{'holds' if v['holds'] else 'does not hold'}**"
        else:
            head += f"**{'better' if v['holds'] else 'not better'}** in mCA"
        lines.append(head + " on these means." + _paired_text(v))
    if not h:
        lines.append("- not enough finished arms yet.")
    evidence = format_evidence(doc, HYPOTHESES, CIFAR10_METRICS)
    if evidence:
        lines += [""] + evidence
    for kind in _GENERATED:
        if sets := set_lines(kind, doc.get(f"{kind.extra}_sets"), HYPOTHESES):
            lines += [""] + sets
    missing = doc.get("missing", [])
    lines += ["", f"Runs still missing ({len(missing)}): " + (", ".join(missing) if missing else "none") + "."]
    corr = sorted({c for row in arms.values() for c in row["per_corruption"]})
    if corr:
        lines += ["", "## Per corruption (mean over severities and seeds, %)", "",
                  "| corruption | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
        for c in corr:
            cells = " | ".join(fmt_stat(row["per_corruption"].get(c)) for row in arms.values())
            lines.append(f"| {c} | {cells} |")
    lines += model_lines(arms)
    if commands:
        lines += ["", "## Commands", "", "```"] + list(commands) + ["```"]
    return "\n".join(lines) + "\n"


def short_table(doc: dict[str, Any]) -> str:
    rows = [f"{'arm':<26} {'seeds':>5} {'clean':>14} {'lossless':>14} {'mCA':>14}"]
    for a, row in doc.get("arms", {}).items():
        rows.append(f"{a:<26} {len(row['seeds']):>5} {fmt_stat(row.get('clean_acc_jpeg')):>14} "
                    f"{fmt_stat(row.get('clean_acc_lossless')):>14} {fmt_stat(row.get('mca')):>14}")
    return "\n".join(rows)
