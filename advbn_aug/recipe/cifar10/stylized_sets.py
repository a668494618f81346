"""Stylized-CIFAR-10 numbers in the table, compared only within one generated set
(:mod:`advbn_aug.recipe.cifar10.generated_sets` for :data:`STYLIZED`).

The set is generated once per machine (:mod:`advbn_aug.eval.stylized`), and another machine can render other pixels,
so two runs' Stylized accuracies are comparable only when they saw the same set. A run's *set id* is the
``set_sha256`` recorded in ``extras.stylized``; runs evaluated before it was recorded carry :data:`LEGACY_SET`, the
set of the committed runs of 2026-11-30. Entries moved by hand under ``extras_on_other_sets`` are not read at all.

- per-arm Stylized means (``doc["modes"]``) use one set, the one with the most runs (:func:`main_set`);
- each paired Stylized difference (``doc["evidence"]``) uses the seeds where both arms saw the same set, on the set
  with the most such pairs; its cells name that set, and ``doc["stylized_sets"]`` counts the pairs dropped.
"""

from __future__ import annotations

from typing import Any

from advbn_aug.recipe.cifar10 import generated_sets as gs
from advbn_aug.recipe.cifar10.generated_sets import GeneratedSet, set_label
from advbn_aug.recipe.core.evidence import Metrics

__all__ = ["LEGACY_SET", "STYLIZED", "run_set", "set_label", "main_set", "on_set", "pair_sets", "modes_and_evidence",
           "set_lines"]

Result = dict[str, Any]
ByArm = dict[str, list[Result]]

LEGACY_SET = "original 2026-11-30 set"  # runs evaluated before the set's sha256 was recorded
STYLIZED = GeneratedSet(extra="stylized", legacy=LEGACY_SET, heading="Stylized-CIFAR-10 sets", short="Stylized",
                        made="Each machine generates its own Stylized-CIFAR-10 set, and the sets of different "
                             "machines differ")


def run_set(r: Result) -> str | None:
    """The set id of run ``r``'s Stylized numbers: its recorded ``set_sha256``, :data:`LEGACY_SET` when it has
    Stylized numbers without one, ``None`` when it has none."""
    return gs.run_set(STYLIZED, r)


def main_set(by_arm: ByArm) -> str | None:
    """The set most runs were evaluated on (``None`` when no run has Stylized numbers)."""
    return gs.main_set(STYLIZED, by_arm)


def on_set(by_arm: ByArm, set_id: str | None) -> ByArm:
    """``by_arm`` with the Stylized numbers of runs on any other set than ``set_id`` removed (shallow copies; the
    given results are not changed). ``set_id=None`` removes every run's."""
    return gs.on_set(STYLIZED, by_arm, set_id)


def pair_sets(by_arm: ByArm, a: str, b: str, prefer: str | None = None) -> dict[str, Any]:
    """How the seeds of arms ``a`` and ``b`` pair on Stylized numbers (:func:`generated_sets.pair_sets
    <advbn_aug.recipe.cifar10.generated_sets.pair_sets>`)."""
    return gs.pair_sets(STYLIZED, by_arm, a, b, prefer)


def modes_and_evidence(by_arm: ByArm, comparisons: dict[str, tuple[str, str, str]], metrics: Metrics | None = None
                       ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(modes, evidence, record)`` with only the Stylized numbers kept within one set (:func:`generated_sets.
    modes_and_evidence <advbn_aug.recipe.cifar10.generated_sets.modes_and_evidence>` for :data:`STYLIZED`)."""
    modes, evidence, records = gs.modes_and_evidence(by_arm, comparisons, (STYLIZED,), metrics)
    return modes, evidence, records[STYLIZED.extra]


def set_lines(record: dict[str, Any] | None, comparisons: dict[str, tuple[str, str, str]]) -> list[str]:
    """Markdown lines: which set the Stylized means and each paired Stylized difference are on, and the pairs
    dropped for set mismatch (``record`` as :func:`modes_and_evidence` returns it; none without Stylized runs)."""
    return gs.set_lines(STYLIZED, record, comparisons)
