"""The parts of a result table every benchmark shares: runs grouped by arm, the row facts (time, model digests,
commits), the missing runs, the exported-models section, the cost cells, and the files written
(``results.json`` / ``results.md`` / ``sha256.txt`` / ``results.png`` / ``evidence.png``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from advbn_aug.recipe.core.config import ArmConfig
from advbn_aug.recipe.core.evidence import Comparisons, Metrics, stat
from advbn_aug.recipe.core.evidence_plot import plot_evidence

__all__ = ["group_by_arm", "run_devices", "run_facts", "model_lines", "missing_runs", "write_table_files",
           "cost_cells", "delta_cell", "unpaired_note", "UNPAIRED_NOTE", "commit_label", "fmt_stat"]

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)


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
    return {"train_seconds": stat([r["train_seconds"] for r in rs]),
            "eval_seconds": stat([r["eval_seconds"] for r in rs]),
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
                      order: Sequence[str], plot: Any, comparisons: Comparisons | None = None,
                      metrics: Metrics | None = None, plot_rows: Sequence[str] | None = None) -> None:
    """``results.json``, ``results.md``, ``sha256.txt`` and ``results.png`` (``plot(doc, path)``) in ``output``;
    with ``comparisons``, also ``evidence.png``, the forest plot of ``doc["evidence"]`` (rows ``plot_rows`` of
    ``metrics``, which labels them; required with ``comparisons``)."""
    if comparisons is not None and metrics is None:
        raise ValueError("write_table_files: pass the benchmark's metrics with comparisons (they label evidence.png)")
    output.mkdir(parents=True, exist_ok=True)
    # compact: results.md is the file people read, and every run's record is here again (the tree must stay small
    # enough to travel to the GPU machine)
    (output / "results.json").write_text(json.dumps(doc, separators=(",", ":")))
    (output / "results.md").write_text(markdown)
    (output / "sha256.txt").write_text("".join(f"{r['sha256']}  {r['arm']['name']}/seed{r['seed']}/model.pt\n"
                                               for a in order for r in sorted(by_arm[a], key=lambda r: r["seed"])))
    plots = [("results.png", lambda path: plot(doc, path))]
    if comparisons is not None:
        labels = {k: label for k, (label, _) in metrics.items()}
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


UNPAIRED_NOTE = ("† this arm's seeds differ from the standard arm's: the Δ column is a difference of means over "
                 "different seeds; the paired differences below use the shared seeds only.")


def delta_cell(arms: dict[str, Any], arm: str, key: str, base: str = "standard") -> str:
    """The main table's ``Δ <key> vs <base>`` cell in points: ``+1.23``, ``+1.23†`` when the two arms' seeds differ
    (a difference of means, not paired: :data:`UNPAIRED_NOTE`), ``-`` for the base arm or a missing value."""
    row, ref = arms.get(arm, {}), arms.get(base, {})
    if arm == base or key not in row or key not in ref:
        return "-"
    mark = "" if sorted(row.get("seeds", [])) == sorted(ref.get("seeds", [])) else "†"
    return f"{100 * (row[key]['mean'] - ref[key]['mean']):+.2f}{mark}"


def unpaired_note(arms: dict[str, Any], arms_shown: Sequence[str], key: str) -> list[str]:
    """``["", UNPAIRED_NOTE]`` under a main table when an arm of ``arms_shown`` has a † in its ``key`` cell, else []."""
    return ["", UNPAIRED_NOTE] if any(delta_cell(arms, a, key).endswith("†") for a in arms_shown) else []


def commit_label(code: dict[str, Any] | None) -> str:
    """``abc1234`` (``+dirty`` when the package differed from it), or ``unrecorded`` for runs from before commits
    were recorded."""
    if not code or not code.get("commit"):
        return "unrecorded"
    return code["commit"][:7] + ("+dirty" if code.get("dirty") else "")


def fmt_stat(stat: dict[str, Any] | None, signed: bool = False) -> str:
    if not stat:
        return "-"
    sign = "+" if signed else ""
    s = f"{100 * stat['mean']:{sign}.2f}"
    return s + (f" ± {100 * stat['std']:.2f}" if stat["n"] > 1 else "")
