"""Stylized-CIFAR-10 numbers in the table, compared only within one generated set.

The set is generated once per machine (:mod:`advbn_aug.eval.stylized`), and another machine can render other pixels,
so two runs' Stylized accuracies are comparable only when they saw the same set. A run's *set id* is the
``set_sha256`` recorded in ``extras.stylized``; runs evaluated before it was recorded carry :data:`LEGACY_SET`, the
set of the committed runs of 2026-11-30. Entries moved by hand under ``extras_on_other_sets`` are not read at all.

- per-arm Stylized means (``doc["modes"]``) use one set, the one with the most runs (:func:`main_set`);
- each paired Stylized difference (``doc["evidence"]``) uses the seeds where both arms saw the same set, on the set
  with the most such pairs; its cells name that set, and ``doc["stylized_sets"]`` counts the pairs dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advbn_aug.recipe.core.evidence import METRICS, Metrics, arm_metrics, evidence_matrix

__all__ = ["LEGACY_SET", "run_set", "set_label", "main_set", "on_set", "pair_sets", "modes_and_evidence",
           "set_lines"]

Result = dict[str, Any]
ByArm = dict[str, list[Result]]

LEGACY_SET = "original 2026-11-30 set"  # runs evaluated before the set's sha256 was recorded


def run_set(r: Result) -> str | None:
    """The set id of run ``r``'s Stylized numbers: its recorded ``set_sha256``, :data:`LEGACY_SET` when it has
    Stylized numbers without one, ``None`` when it has none."""
    entry = r.get("extras", {}).get("stylized")
    if not isinstance(entry, dict):
        return None
    return entry.get("set_sha256") or LEGACY_SET


def set_label(set_id: str | None) -> str:
    """``set_id`` for a table: the legacy label, or ``sha256 <first 12 hex digits>``."""
    if set_id is None or set_id == LEGACY_SET:
        return str(set_id)
    return f"sha256 {set_id[:12]}"


def _is_stylized(metric: str) -> bool:
    return metric.startswith("stylized")


def _best(counts: dict[str, int], prefer: str | None) -> str | None:
    """The id with the largest count; ties go to ``prefer``, then to the legacy set, then alphabetically."""
    if not counts:
        return None
    return min(counts, key=lambda s: (-counts[s], s != prefer, s != LEGACY_SET, s))


def main_set(by_arm: ByArm) -> str | None:
    """The set most runs were evaluated on (``None`` when no run has Stylized numbers)."""
    ids = [s for runs in by_arm.values() for r in runs if (s := run_set(r)) is not None]
    return _best({s: ids.count(s) for s in ids}, None)


def on_set(by_arm: ByArm, set_id: str | None) -> ByArm:
    """``by_arm`` with the Stylized numbers of runs on any other set than ``set_id`` removed (shallow copies; the
    given results are not changed). ``set_id=None`` removes every run's."""
    def keep(r: Result) -> Result:
        if run_set(r) in (None, set_id):
            return r
        return {**r, "extras": {k: v for k, v in r["extras"].items() if k != "stylized"}}
    return {a: [keep(r) for r in runs] for a, runs in by_arm.items()}


def pair_sets(by_arm: ByArm, a: str, b: str, prefer: str | None = None) -> dict[str, Any]:
    """How the seeds of arms ``a`` and ``b`` pair on Stylized numbers: ``{"set": the set with the most same-set
    pairs (ties: ``prefer``), "seeds": those pairs' seeds, "dropped_mismatch": seeds whose two runs saw different
    sets, "dropped_other_set": same-set pairs on another set}``."""
    ra, rb = ({r["seed"]: r for r in by_arm.get(x, [])} for x in (a, b))
    same: dict[str, list[int]] = {}
    mismatch = 0
    for seed in sorted(set(ra) & set(rb)):
        sa, sb = run_set(ra[seed]), run_set(rb[seed])
        if sa is None or sb is None:
            continue
        if sa == sb:
            same.setdefault(sa, []).append(seed)
        else:
            mismatch += 1
    chosen = _best({s: len(v) for s, v in same.items()}, prefer)
    seeds = same.get(chosen, []) if chosen is not None else []
    return {"set": chosen, "seeds": seeds, "dropped_mismatch": mismatch,
            "dropped_other_set": sum(len(v) for s, v in same.items() if s != chosen)}


def modes_and_evidence(by_arm: ByArm, comparisons: dict[str, tuple[str, str, str]], metrics: Metrics | None = None
                       ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(modes, evidence, sets)``: :func:`~advbn_aug.recipe.core.evidence.arm_metrics` with the Stylized means on
    :func:`main_set`, :func:`~advbn_aug.recipe.core.evidence.evidence_matrix` with each Stylized difference on
    same-set pairs (:func:`pair_sets`; each such cell names its ``set``), and the record of both
    (``{"main", "runs": {set: ["arm/seed<k>"]}, "comparisons": {key: pair_sets(...) without seeds}}``)."""
    metrics = METRICS if metrics is None else metrics
    main = main_set(by_arm)
    modes = arm_metrics(on_set(by_arm, main), metrics)
    evidence = evidence_matrix(on_set(by_arm, None), comparisons, metrics)  # everything but Stylized
    styl = {k: v for k, v in metrics.items() if _is_stylized(k)}
    runs: dict[str, list[str]] = {}
    for arm, rs in by_arm.items():
        for r in sorted(rs, key=lambda r: r["seed"]):
            if (s := run_set(r)) is not None:
                runs.setdefault(s, []).append(f"{arm}/seed{r['seed']}")
    record: dict[str, Any] = {"main": main, "runs": runs, "comparisons": {}}
    for key, (a, b, label) in comparisons.items():
        p = pair_sets(by_arm, a, b, main)
        if p["set"] is None and not p["dropped_mismatch"]:
            continue
        record["comparisons"][key] = {k: v for k, v in p.items() if k != "seeds"} | {"pairs": len(p["seeds"])}
        sub = on_set({x: [r for r in by_arm.get(x, []) if r["seed"] in p["seeds"]] for x in (a, b)}, p["set"])
        cells = evidence_matrix(sub, {key: (a, b, label)}, styl).get(key, {})
        if cells:
            merged = {**evidence.get(key, {}), **{m: {**c, "set": p["set"]} for m, c in cells.items()}}
            evidence[key] = {m: merged[m] for m in metrics if m in merged}  # in the metrics' order
    return modes, evidence, record


def set_lines(record: dict[str, Any] | None, comparisons: dict[str, tuple[str, str, str]]) -> list[str]:
    """Markdown lines: which set the Stylized means and each paired Stylized difference are on, and the pairs
    dropped for set mismatch (``record`` as :func:`modes_and_evidence` returns it; none without Stylized runs)."""
    if not record or not record.get("runs"):
        return []
    main, runs = record["main"], record["runs"]
    lines = ["## Stylized-CIFAR-10 sets", "",
             "Each machine generates its own Stylized-CIFAR-10 set, and the sets of different machines differ, so "
             "Stylized numbers are compared only within one set (the sha256 of its images, recorded with each run; "
             f"runs evaluated before it was recorded: the `{LEGACY_SET}`; runs whose entry is under "
             "`extras_on_other_sets` are left out).", "",
             "- sets: " + "; ".join(f"`{set_label(s)}` ({len(v)} runs)" for s, v in runs.items()) + ".",
             f"- Stylized means per arm (Evaluation modes) are on the `{set_label(main)}`"
             + _left_out([r for s, v in runs.items() if s != main for r in v]) + "."]
    comps = record.get("comparisons", {})
    if comps:
        cells = []
        for key, c in comps.items():
            dropped = c["dropped_mismatch"] + c["dropped_other_set"]
            on = f"{c['pairs']} pairs on `{set_label(c['set'])}`" if c["set"] is not None else "no pairs on one set"
            cells.append(f"{comparisons[key][2]}: {on}"
                         + (f", {dropped} dropped ({c['dropped_mismatch']} with the two runs on different sets, "
                            f"{c['dropped_other_set']} on another set)" if dropped else ""))
        total = sum(c["dropped_mismatch"] + c["dropped_other_set"] for c in comps.values())
        lines.append(f"- paired Stylized differences ({total} pairs dropped for set mismatch in all): "
                     + "; ".join(cells) + ".")
    return lines


def _left_out(runs: Sequence[str]) -> str:
    return f"; left out: {len(runs)} runs on other sets ({', '.join(runs)})" if runs else ""
