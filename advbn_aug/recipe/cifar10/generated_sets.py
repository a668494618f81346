"""Numbers on test sets generated once per machine, in the table compared only within one generated set.

Some evaluation modes read a test set that each machine makes for itself (Stylized-CIFAR-10, rendered by an ONNX
network; the decoded sets, decoded by a decoder trained on that machine), and another machine makes other pixels,
so two runs' numbers on such a set are comparable only when they saw the same set. A :class:`GeneratedSet` names
one such mode: a run's *set id* is the ``set_sha256`` recorded in ``extras[<extra>]``; runs evaluated before it was
recorded carry the mode's legacy label. Entries moved by hand under ``extras_on_other_sets`` are not read at all.

- per-arm means (``doc["modes"]``) of the mode's metrics use one set, the one with the most runs (:func:`main_set`);
- each paired difference (``doc["evidence"]``) of them uses the seeds where both arms saw the same set, on the set
  with the most such pairs; its cells name that set, and the mode's record counts the pairs dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advbn_aug.recipe.cifar10.metrics import CIFAR10_METRICS
from advbn_aug.recipe.core.evidence import Metrics, arm_metrics, evidence_matrix

__all__ = ["GeneratedSet", "run_set", "set_label", "main_set", "on_set", "pair_sets", "modes_and_evidence",
           "set_lines"]

Result = dict[str, Any]
ByArm = dict[str, list[Result]]
Comparisons = dict[str, tuple[str, str, str]]


@dataclass(frozen=True)
class GeneratedSet:
    """An evaluation mode on a set generated per machine: ``extra`` (its key under ``result["extras"]``; its metrics
    are ``extra`` and ``extra_*``), ``legacy`` (the set id of runs without a recorded ``set_sha256``), and the words
    of its ``results.md`` section: ``heading``, ``made`` (how sets come to differ) and ``short`` (its numbers'
    name, e.g. ``Stylized``)."""

    extra: str
    legacy: str
    heading: str
    made: str
    short: str

    def is_metric(self, metric: str) -> bool:
        """Whether table metric ``metric`` reads this mode's numbers."""
        return metric == self.extra or metric.startswith(f"{self.extra}_")


def run_set(kind: GeneratedSet, r: Result) -> str | None:
    """The set id of run ``r``'s ``kind`` numbers: its recorded ``set_sha256``, ``kind.legacy`` when it has numbers
    without one, ``None`` when it has none."""
    entry = r.get("extras", {}).get(kind.extra)
    if not isinstance(entry, dict):
        return None
    return entry.get("set_sha256") or kind.legacy


def set_label(set_id: str | None) -> str:
    """``set_id`` for a table: ``sha256 <first 12 hex digits>`` for a hash, else the id itself (a legacy label)."""
    if set_id is not None and re.fullmatch(r"[0-9a-f]{64}", set_id):
        return f"sha256 {set_id[:12]}"
    return str(set_id)


def _best(counts: dict[str, int], prefer: str | None, legacy: str) -> str | None:
    """The id with the largest count; ties go to ``prefer``, then to the legacy set, then alphabetically."""
    if not counts:
        return None
    return min(counts, key=lambda s: (-counts[s], s != prefer, s != legacy, s))


def main_set(kind: GeneratedSet, by_arm: ByArm) -> str | None:
    """The set most runs were evaluated on (``None`` when no run has ``kind`` numbers)."""
    ids = [s for runs in by_arm.values() for r in runs if (s := run_set(kind, r)) is not None]
    return _best({s: ids.count(s) for s in ids}, None, kind.legacy)


def on_set(kind: GeneratedSet, by_arm: ByArm, set_id: str | None) -> ByArm:
    """``by_arm`` with the ``kind`` numbers of runs on any other set than ``set_id`` removed (shallow copies; the
    given results are not changed). ``set_id=None`` removes every run's."""
    def keep(r: Result) -> Result:
        if run_set(kind, r) in (None, set_id):
            return r
        return {**r, "extras": {k: v for k, v in r["extras"].items() if k != kind.extra}}
    return {a: [keep(r) for r in runs] for a, runs in by_arm.items()}


def pair_sets(kind: GeneratedSet, by_arm: ByArm, a: str, b: str, prefer: str | None = None) -> dict[str, Any]:
    """How the seeds of arms ``a`` and ``b`` pair on ``kind`` numbers: ``{"set": the set with the most same-set
    pairs (ties: ``prefer``), "seeds": those pairs' seeds, "dropped_mismatch": seeds whose two runs saw different
    sets, "dropped_other_set": same-set pairs on another set}``."""
    ra, rb = ({r["seed"]: r for r in by_arm.get(x, [])} for x in (a, b))
    same: dict[str, list[int]] = {}
    mismatch = 0
    for seed in sorted(set(ra) & set(rb)):
        sa, sb = run_set(kind, ra[seed]), run_set(kind, rb[seed])
        if sa is None or sb is None:
            continue
        if sa == sb:
            same.setdefault(sa, []).append(seed)
        else:
            mismatch += 1
    chosen = _best({s: len(v) for s, v in same.items()}, prefer, kind.legacy)
    seeds = same.get(chosen, []) if chosen is not None else []
    return {"set": chosen, "seeds": seeds, "dropped_mismatch": mismatch,
            "dropped_other_set": sum(len(v) for s, v in same.items() if s != chosen)}


def modes_and_evidence(by_arm: ByArm, comparisons: Comparisons, kinds: Sequence[GeneratedSet],
                       metrics: Metrics | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(modes, evidence, records)``: :func:`~advbn_aug.recipe.core.evidence.arm_metrics` with each kind's means on
    its :func:`main_set`, :func:`~advbn_aug.recipe.core.evidence.evidence_matrix` with each kind's differences on
    same-set pairs (:func:`pair_sets`; each such cell names its ``set``), and the record of both per kind
    (``{extra: {"main", "runs": {set: ["arm/seed<k>"]}, "comparisons": {key: pair_sets(...) without seeds}}}``)."""
    metrics = CIFAR10_METRICS if metrics is None else metrics
    mains = {kind.extra: main_set(kind, by_arm) for kind in kinds}
    on_main, on_none = by_arm, by_arm
    for kind in kinds:
        on_main, on_none = on_set(kind, on_main, mains[kind.extra]), on_set(kind, on_none, None)
    modes = arm_metrics(on_main, metrics)
    evidence = evidence_matrix(on_none, comparisons, metrics)  # everything but the generated sets' numbers
    records: dict[str, Any] = {}
    for kind in kinds:
        records[kind.extra] = _kind_evidence(kind, by_arm, comparisons, metrics, mains[kind.extra], evidence)
    return modes, evidence, records


def _kind_evidence(kind: GeneratedSet, by_arm: ByArm, comparisons: Comparisons, metrics: Metrics, main: str | None,
                   evidence: dict[str, Any]) -> dict[str, Any]:
    """Add ``kind``'s same-set paired differences to ``evidence`` (in place); return ``kind``'s record."""
    own = {k: v for k, v in metrics.items() if kind.is_metric(k)}
    runs: dict[str, list[str]] = {}
    for arm, rs in by_arm.items():
        for r in sorted(rs, key=lambda r: r["seed"]):
            if (s := run_set(kind, r)) is not None:
                runs.setdefault(s, []).append(f"{arm}/seed{r['seed']}")
    record: dict[str, Any] = {"main": main, "runs": runs, "comparisons": {}}
    for key, (a, b, label) in comparisons.items():
        p = pair_sets(kind, by_arm, a, b, main)
        if p["set"] is None and not p["dropped_mismatch"]:
            continue
        record["comparisons"][key] = {k: v for k, v in p.items() if k != "seeds"} | {"pairs": len(p["seeds"])}
        sub = on_set(kind, {x: [r for r in by_arm.get(x, []) if r["seed"] in p["seeds"]] for x in (a, b)}, p["set"])
        cells = evidence_matrix(sub, {key: (a, b, label)}, own).get(key, {})
        if cells:
            merged = {**evidence.get(key, {}), **{m: {**c, "set": p["set"]} for m, c in cells.items()}}
            evidence[key] = {m: merged[m] for m in metrics if m in merged}  # in the metrics' order
    return record


def set_lines(kind: GeneratedSet, record: dict[str, Any] | None, comparisons: Comparisons) -> list[str]:
    """Markdown lines: which set ``kind``'s means and each of its paired differences are on, and the pairs dropped
    for set mismatch (``record`` as :func:`modes_and_evidence` returns it; none without runs on such a set)."""
    if not record or not record.get("runs"):
        return []
    main, runs = record["main"], record["runs"]
    lines = [f"## {kind.heading}", "",
             f"{kind.made}, so {kind.short} numbers are compared only within one set (the sha256 of its images, "
             f"recorded with each run; runs evaluated before it was recorded: the `{kind.legacy}`; runs whose entry "
             "is under `extras_on_other_sets` are left out).", "",
             "- sets: " + "; ".join(f"`{set_label(s)}` ({len(v)} runs)" for s, v in runs.items()) + ".",
             f"- {kind.short} means per arm (Evaluation modes) are on the `{set_label(main)}`"
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
        lines.append(f"- paired {kind.short} differences ({total} pairs dropped for set mismatch in all): "
                     + "; ".join(cells) + ".")
    return lines


def _left_out(runs: Sequence[str]) -> str:
    return f"; left out: {len(runs)} runs on other sets ({', '.join(runs)})" if runs else ""
