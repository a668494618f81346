"""Stylized-CIFAR-10 numbers in the table only within one generated set (advbn_aug.recipe.cifar10.stylized_sets), on
hand-made run results: runs on different sets are never paired, runs on the same set are, runs evaluated before
the set was recorded carry the legacy label, and entries under ``extras_on_other_sets`` stay out."""

from __future__ import annotations

import pytest

from ..._recipe_toy import toy_config

X = "ab" * 32  # the set_sha256 of a set generated elsewhere


def _run(arm: str, seed: int, stylized: float | None = None, set_sha256: str | None = None, mca: float = 0.6,
         **kw):
    """A run result with the fields the table reads; ``stylized``: its Stylized mean (``None``: no entry), on set
    ``set_sha256`` (``None``: recorded before set ids were)."""
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS

    r = {"arm": DEFAULT_ARMS[arm].to_dict(), "seed": seed, "model": "resnet20", "sha256": f"{seed + 10:x}" * 64,
         "train_seconds": 12.0, "eval_seconds": 3.0, "clean_acc_jpeg": 0.9, "clean_acc_lossless": 0.92,
         "jpeg_gap": 0.01, "mca": mca, "mca_benchmark15": mca, "per_corruption": {"contrast": mca},
         "per_severity": {"3": mca}, "extras": {}, **kw}
    if stylized is not None:
        entry = {"key": "k", "images": 1000, "clean": {"none": {"mean": stylized, "accuracy": {"1": stylized}}}}
        r["extras"]["stylized"] = entry if set_sha256 is None else {**entry, "set_sha256": set_sha256}
    return r


def _runs() -> dict[str, list[dict]]:
    """standard: 3 legacy; advbn: seeds 0, 1 legacy, seed 2 on X; dsu, dsu_advbn: seeds 0, 1 on X (5 runs each)."""
    return {
        "standard": [_run("standard", s, 0.40 + 0.01 * s, mca=0.60) for s in range(3)],
        "advbn": [_run("advbn", 0, 0.45, mca=0.62), _run("advbn", 1, 0.47, mca=0.63),
                  _run("advbn", 2, 0.99, X, mca=0.64)],
        "dsu": [_run("dsu", s, 0.50 + 0.02 * s, X) for s in range(2)],
        "dsu_advbn": [_run("dsu_advbn", s, 0.55 + 0.01 * s, X) for s in range(2)],
    }


def test_a_runs_set_is_its_recorded_sha256_or_the_legacy_label():
    from advbn_aug.recipe.cifar10.stylized_sets import LEGACY_SET, run_set, set_label

    assert run_set(_run("standard", 0, 0.4)) == LEGACY_SET == "original 2026-11-30 set"
    assert run_set(_run("standard", 0, 0.4, X)) == X
    assert run_set(_run("standard", 0)) is None  # no Stylized numbers
    moved = _run("standard", 0, extras_on_other_sets={"stylized": {"clean": {"none": {"mean": 0.5}}}})
    assert run_set(moved) is None  # kept by hand under extras_on_other_sets: out of the table
    assert set_label(X) == f"sha256 {X[:12]}" and set_label(LEGACY_SET) == LEGACY_SET


def test_pairs_only_runs_on_the_same_set():
    from advbn_aug.recipe.cifar10.stylized_sets import LEGACY_SET, pair_sets

    by_arm = _runs()
    p = pair_sets(by_arm, "advbn", "standard")
    assert p == {"set": LEGACY_SET, "seeds": [0, 1], "dropped_mismatch": 1, "dropped_other_set": 0}
    assert pair_sets(by_arm, "dsu_advbn", "dsu") == {"set": X, "seeds": [0, 1], "dropped_mismatch": 0,
                                                     "dropped_other_set": 0}
    assert pair_sets(by_arm, "dsu_advbn", "advbn") == {"set": None, "seeds": [], "dropped_mismatch": 2,
                                                       "dropped_other_set": 0}
    # both sets have same-set pairs: the one with more pairs is used, the other's are dropped
    mixed = {"standard": [_run("standard", s, 0.4, X if s == 2 else None) for s in range(3)],
             "advbn": [_run("advbn", s, 0.5, X if s == 2 else None) for s in range(3)]}
    assert pair_sets(mixed, "advbn", "standard") == {"set": LEGACY_SET, "seeds": [0, 1], "dropped_mismatch": 0,
                                                     "dropped_other_set": 1}
    # a tie goes to the preferred set (the table's main set)
    tie = {a: [_run(a, 0, 0.4), _run(a, 1, 0.4, X)] for a in ("standard", "advbn")}
    assert pair_sets(tie, "advbn", "standard", prefer=X)["set"] == X
    assert pair_sets(tie, "advbn", "standard")["set"] == LEGACY_SET


def test_main_set_has_the_most_runs():
    from advbn_aug.recipe.cifar10.stylized_sets import LEGACY_SET, main_set

    assert main_set(_runs()) == LEGACY_SET  # 5 runs each: a tie goes to the legacy set
    assert main_set({**_runs(), "mixstyle": [_run("mixstyle", 0, 0.5, X)]}) == X
    assert main_set({"standard": [_run("standard", 0)]}) is None


def test_means_and_differences_never_mix_sets():
    from advbn_aug.recipe.cifar10.config import HYPOTHESES
    from advbn_aug.recipe.cifar10.stylized_sets import LEGACY_SET, modes_and_evidence

    by_arm = _runs()
    modes, ev, record = modes_and_evidence(by_arm, HYPOTHESES)
    # per-arm means on the main (legacy) set: advbn's seed 2 (0.99, on X) is left out; dsu has none on it
    assert modes["advbn"]["stylized"]["n"] == 2 and modes["advbn"]["stylized"]["mean"] == pytest.approx(0.46)
    assert modes["standard"]["stylized"]["mean"] == pytest.approx(0.41)
    assert "stylized" not in modes["dsu"] and "mca" in modes["dsu"]
    assert modes["advbn"]["mca"]["n"] == 3  # the other metrics keep every run
    # AdvBN vs standard: seeds 0, 1 on the legacy set (0.45 - 0.40, 0.47 - 0.41); seed 2 (different sets) dropped
    cell = ev["advbn_vs_standard"]["stylized"]
    assert cell["seeds"] == [0, 1] and cell["set"] == LEGACY_SET and cell["mean"] == pytest.approx(0.055)
    assert ev["advbn_vs_standard"]["mca"]["n"] == 3 and "set" not in ev["advbn_vs_standard"]["mca"]
    # DSU + AdvBN vs DSU: both on X, paired there
    cell = ev["dsu_advbn_vs_dsu"]["stylized"]
    assert cell["set"] == X and cell["seeds"] == [0, 1] and cell["mean"] == pytest.approx(0.045)
    # DSU + AdvBN (X) vs AdvBN (legacy on those seeds): no Stylized difference at all, mCA still paired
    assert "stylized" not in ev["dsu_advbn_vs_advbn"] and ev["dsu_advbn_vs_advbn"]["mca"]["n"] == 2
    assert record["main"] == LEGACY_SET
    assert record["runs"] == {LEGACY_SET: ["standard/seed0", "standard/seed1", "standard/seed2", "advbn/seed0",
                                           "advbn/seed1"],
                              X: ["advbn/seed2", "dsu/seed0", "dsu/seed1", "dsu_advbn/seed0", "dsu_advbn/seed1"]}
    assert record["comparisons"]["advbn_vs_standard"] == {"set": LEGACY_SET, "pairs": 2, "dropped_mismatch": 1,
                                                          "dropped_other_set": 0}
    assert record["comparisons"]["dsu_advbn_vs_advbn"]["pairs"] == 0
    assert by_arm["advbn"][2]["extras"]["stylized"]["set_sha256"] == X  # the results themselves are not changed


def test_the_table_says_which_set_each_stylized_figure_is_on(tmp_path):
    from advbn_aug.recipe import aggregate

    runs = [r for rs in _runs().values() for r in rs]
    runs.append(_run("mixstyle", 0, extras_on_other_sets={"stylized": {"clean": {"none": {"mean": 0.9}}}}))
    doc = aggregate(runs, toy_config(), tmp_path, ["standard", "advbn", "dsu", "dsu_advbn", "mixstyle"])
    assert doc["stylized_sets"]["main"] == "original 2026-11-30 set"
    assert "stylized" not in doc["modes"]["mixstyle"]  # its entry under extras_on_other_sets is not read
    md = (tmp_path / "results.md").read_text()
    assert "## Stylized-CIFAR-10 sets" in md
    assert "- sets: `original 2026-11-30 set` (5 runs); `sha256 abababababab` (5 runs)." in md
    assert ("Stylized means per arm (Evaluation modes) are on the `original 2026-11-30 set`; left out: 5 runs on "
            "other sets (advbn/seed2, dsu/seed0, dsu/seed1, dsu_advbn/seed0, dsu_advbn/seed1)") in md
    assert ("AdvBN vs standard: 2 pairs on `original 2026-11-30 set`, 1 dropped (1 with the two runs on different "
            "sets, 0 on another set)") in md
    assert "DSU + AdvBN vs DSU: 2 pairs on `sha256 abababababab`;" in md
    assert ("DSU + AdvBN vs AdvBN: no pairs on one set, 2 dropped (2 with the two runs on different sets, 0 on "
            "another set)") in md
    # AdvBN vs standard 1; DSU vs standard, AdvBN vs DSU, DSU + AdvBN vs AdvBN 2 each
    assert "(7 pairs dropped for set mismatch in all)" in md


def test_no_stylized_runs_no_section(tmp_path):
    from advbn_aug.recipe import aggregate

    aggregate([_run("standard", 0), _run("advbn", 0)], toy_config(), tmp_path, ["standard", "advbn"])
    assert "Stylized-CIFAR-10 sets" not in (tmp_path / "results.md").read_text()
