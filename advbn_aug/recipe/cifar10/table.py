"""The result table: per-arm statistics over seeds, the hypotheses (paired by seed, with Student-t intervals), and
``results.json`` / ``results.md`` / ``results.png`` / ``sha256.txt``."""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advbn_aug.recipe.cifar10.config import ArmConfig, RecipeConfig, prefix_names
from advbn_aug.recipe.cifar10.stylized_sets import modes_and_evidence, set_lines
from advbn_aug.recipe.core.evidence import (
    METRICS,
    Metrics,
    confidence_interval,
    format_evidence,
)
from advbn_aug.recipe.core.evidence import interval_text as _interval_text
from advbn_aug.recipe.core.evidence import stat as _stat
from advbn_aug.recipe.core.evidence_plot import EVIDENCE_PLOT_METRICS, plot_evidence
from advbn_aug.recipe.core.plot import plot_table

__all__ = ["aggregate", "format_table", "short_table", "confidence_interval", "group_by_arm", "run_facts",
           "model_lines", "missing_runs", "write_table_files", "cost_cells", "fmt_stat", "commit_label"]

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)


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
    # Stylized numbers only within one generated set (recipe.cifar10.stylized_sets)
    modes, evidence, stylized_sets = modes_and_evidence({a: by_arm[a] for a in order}, _HYPOTHESES)
    doc = {"benchmark": "cifar10", "config": cfg.to_dict(), "arms": table, "hypotheses": checks, "missing": missing,
           **({"devices": devices} if (devices := run_devices(results)) else {}),
           "modes": modes, "evidence": evidence, "stylized_sets": stylized_sets,
           "runs": [{k: v for k, v in r.items() if k != "accuracy"} for r in results],
           "written": _dt.datetime.now().isoformat(timespec="seconds")}
    write_table_files(output, doc, format_table(doc, commands), by_arm, order, plot_table, _HYPOTHESES,
                      plot_rows=EVIDENCE_PLOT_METRICS)
    return doc


def group_by_arm(results: list[dict[str, Any]], arm_order: Sequence[str]
                 ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """``({arm: its runs}, arm order)``: the order of ``arm_order``, then any other arm alphabetically."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_arm.setdefault(r["arm"]["name"], []).append(r)
    order = list(dict.fromkeys([a for a in arm_order if a in by_arm] + sorted(set(by_arm) - set(arm_order))))
    return by_arm, order


def run_devices(results: list[dict[str, Any]]) -> dict[str, int]:
    """``{device name: runs}`` of the runs that trained the table's models; ``{}`` if none records its device
    (runs made before devices were recorded, all on CPU)."""
    if not any("device_name" in r for r in results):
        return {}
    names = [r.get("device_name", "cpu (not recorded)") for r in results]
    return {n: names.count(n) for n in sorted(set(names))}


def run_facts(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """The table row's fields every benchmark has: training and evaluation seconds, model digests, commits."""
    return {"train_seconds": _stat([r["train_seconds"] for r in rs]),
            "eval_seconds": _stat([r["eval_seconds"] for r in rs]),
            "sha256": {f"seed{r['seed']}": r["sha256"] for r in rs},
            "code": sorted({commit_label(r.get("code")) for r in rs}),
            "provenance": {f"seed{r['seed']}": _provenance(r) for r in rs}}


def _provenance(r: dict[str, Any]) -> dict[str, Any]:
    """The commits behind one run's numbers: training, the main evaluation, and each evaluation mode (``extras``),
    which may have been added later by newer code."""
    return {"train": commit_label(r.get("code")), "eval": commit_label(r.get("eval_code")),
            "modes": {m: commit_label(e.get("code")) for m, e in sorted(r.get("extras", {}).items())}}


def model_lines(arms: dict[str, Any]) -> list[str]:
    """The table's last section: each exported model's sha256 and the commits that trained and evaluated it."""
    lines = ["", "## Exported models (sha256) and the commits behind each run", ""]
    for a, row in arms.items():
        prov = row.get("provenance", {})
        for s, h256 in row["sha256"].items():
            p = prov.get(s)
            facts = ""
            if p:
                modes = ", ".join(f"{m} {c}" for m, c in p["modes"].items())
                facts = f"; trained {p['train']}, evaluated {p['eval']}" + (f", modes: {modes}" if modes else "")
            lines.append(f"- `{a}/{s}/model.pt`: `{h256}`{facts}")
    return lines


def missing_runs(results: list[dict[str, Any]], jobs: Sequence[tuple[ArmConfig, int]]) -> list[str]:
    """``arm/seed<k>`` of every job without a result."""
    done = {(r["arm"]["name"], r["seed"]) for r in results}
    return [f"{a.name}/seed{s}" for a, s in jobs if (a.name, s) not in done]


def write_table_files(output: Path, doc: dict[str, Any], markdown: str, by_arm: dict[str, list[dict[str, Any]]],
                      order: Sequence[str], plot: Any, comparisons: dict[str, tuple[str, str, str]] | None = None,
                      metrics: Metrics | None = None, plot_rows: Sequence[str] | None = None) -> None:
    """``results.json``, ``results.md``, ``sha256.txt`` and ``results.png`` (``plot(doc, path)``) in ``output``;
    with ``comparisons``, also ``evidence.png``, the forest plot of ``doc["evidence"]`` (rows ``plot_rows`` of
    ``metrics``, default the CIFAR-10 recipe's)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(doc, indent=1))
    (output / "results.md").write_text(markdown)
    (output / "sha256.txt").write_text("".join(f"{r['sha256']}  {r['arm']['name']}/seed{r['seed']}/model.pt\n"
                                               for a in order for r in sorted(by_arm[a], key=lambda r: r["seed"])))
    plots = [("results.png", lambda path: plot(doc, path))]
    if comparisons is not None:
        labels = {k: label for k, (label, _) in (METRICS if metrics is None else metrics).items()}
        plots.append(("evidence.png", lambda path: plot_evidence(doc.get("evidence", {}), comparisons, labels, path,
                                                                 plot_rows)))
    for name, draw in plots:
        try:
            draw(output / name)
        except Exception as err:  # plotting is a convenience; the numbers are in the JSON
            log.warning("could not write %s: %s", name, err)


def cost_cells(arms: dict[str, Any], row: dict[str, Any]) -> str:
    """`` secs | cost vs standard | code`` cells of a main-table row."""
    secs = row["train_seconds"]["mean"]
    base_s = arms.get("standard", {}).get("train_seconds", {}).get("mean")
    cost = f"{secs / base_s:.2f}x" if base_s and secs else "-"
    code = ", ".join(row.get("code", [])) or "unrecorded"
    return f"{secs:.0f} | {cost} | {code}"


def commit_label(code: dict[str, Any] | None) -> str:
    """``abc1234`` (``+dirty`` when the package differed from it), or ``unrecorded`` for runs from before commits
    were recorded."""
    if not code or not code.get("commit"):
        return "unrecorded"
    return code["commit"][:7] + ("+dirty" if code.get("dirty") else "")


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


# hypothesis key -> (arm, its control, label); the first also bounds the clean cost (0.5 points)
_HYPOTHESES = {
    "advbn_vs_standard": ("advbn", "standard", "AdvBN vs standard"),
    "augmix_advbn_vs_augmix": ("augmix_advbn", "augmix", "AugMix + AdvBN vs AugMix"),
    "augmix_vs_standard": ("augmix", "standard", "AugMix vs standard"),
    "mixstyle_vs_standard": ("mixstyle", "standard", "MixStyle vs standard"),
    "dsu_vs_standard": ("dsu", "standard", "DSU vs standard"),
    "advbn_vs_mixstyle": ("advbn", "mixstyle", "AdvBN vs MixStyle"),
    "advbn_vs_dsu": ("advbn", "dsu", "AdvBN vs DSU"),
    # the stacks (issue 23): does AdvBN add to DSU, DSU to AdvBN, AdvBN on a quarter of the batch, DSU to AugMix
    "dsu_advbn_vs_dsu": ("dsu_advbn", "dsu", "DSU + AdvBN vs DSU"),
    "dsu_advbn_vs_advbn": ("dsu_advbn", "advbn", "DSU + AdvBN vs AdvBN"),
    "advbn_quarter_vs_advbn": ("advbn_quarter", "advbn", "AdvBN on a quarter of the batch vs AdvBN"),
    "advbn_quarter_vs_standard": ("advbn_quarter", "standard", "AdvBN on a quarter of the batch vs standard"),
    "augmix_dsu_vs_augmix": ("augmix_dsu", "augmix", "AugMix + DSU vs AugMix"),
    "augmix_dsu_advbn_vs_augmix_dsu": ("augmix_dsu_advbn", "augmix_dsu", "AugMix + DSU + AdvBN vs AugMix + DSU"),
    "deepaugment_augmix_advbn_vs_deepaugment_augmix": ("deepaugment_augmix_advbn", "deepaugment_augmix",
                                                       "DeepAugment + AugMix + AdvBN vs DeepAugment + AugMix"),
}


def _hypotheses(table: dict[str, Any], by_arm: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (a, b, _) in _HYPOTHESES.items():
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


def fmt_stat(stat: dict[str, Any] | None, signed: bool = False) -> str:
    if not stat:
        return "-"
    sign = "+" if signed else ""
    s = f"{100 * stat['mean']:{sign}.2f}"
    return s + (f" ± {100 * stat['std']:.2f}" if stat["n"] > 1 else "")


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
    base = arms.get("standard", {}).get("mca")
    for a, row in arms.items():
        cells = [fmt_stat(row.get(k), signed=k == "jpeg_gap") for k, _ in _COLUMNS]
        dm = "-"
        if base is not None and "mca" in row and a != "standard":
            dm = f"{100 * (row['mca']['mean'] - base['mean']):+.2f}"
        lines.append(f"| {a} | {len(row['seeds'])} | " + " | ".join(cells) + f" | {dm} | {cost_cells(arms, row)} |")
    lines += ["", "## Hypotheses", ""]
    h = doc["hypotheses"]
    for key, (_, _, label) in _HYPOTHESES.items():
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
    evidence = format_evidence(doc, _HYPOTHESES)
    if evidence:
        lines += [""] + evidence
    if sets := set_lines(doc.get("stylized_sets"), _HYPOTHESES):
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
