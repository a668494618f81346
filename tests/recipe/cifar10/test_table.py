"""The recipe's result table (advbn_aug.recipe.cifar10.table): statistics over seeds, hypotheses paired by seed with
Student-t intervals, missing runs and the commit of each arm, on hand-made run results."""

from __future__ import annotations

import pytest

from ..._recipe_toy import toy_config


def _result(arm: str = "standard", seed: int = 0, **kw):
    """A run result as ``run_arm`` stores it (the fields the table reads)."""
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS

    per_corruption = {"gaussian_noise": 0.55, "contrast": 0.75}
    r = {"arm": DEFAULT_ARMS[arm].to_dict(), "seed": seed, "model": "resnet20", "sha256": f"{seed + 10:x}" * 64,
         "train_seconds": 12.0, "eval_seconds": 3.0, "trainable_parameters": 100, "clean_acc_jpeg": 0.9,
         "clean_acc_lossless": 0.92, "jpeg_gap": 0.01, "mca": 0.65, "mca_benchmark15": 0.64,
         "per_corruption": per_corruption, "per_severity": {"3": 0.65},
         "accuracy": {c: {"3": a} for c, a in per_corruption.items()}, "code": {"commit": "b" * 40, "dirty": False}}
    r.update(kw)
    return r


def test_aggregate_two_seeds_mean_std(tmp_path):
    from advbn_aug.recipe import aggregate

    cfg = toy_config()
    r = _result()
    r1 = dict(r, seed=1, sha256="0" * 64, mca=r["mca"] + 0.02)
    doc = aggregate([r, r1], cfg, tmp_path, ["standard", "standard"])
    row = doc["arms"]["standard"]
    assert row["seeds"] == [0, 1] and row["mca"]["n"] == 2
    assert row["mca"]["mean"] == pytest.approx(r["mca"] + 0.01)
    assert row["mca"]["std"] == pytest.approx(0.02 / 2 ** 0.5)
    assert (tmp_path / "sha256.txt").read_text().count("\n") == 2
    assert not (tmp_path / "evidence.png").exists()  # one arm: no comparison, no forest plot
    assert " ± " in (tmp_path / "results.md").read_text()


def test_hypotheses_pair_arms_by_seed(tmp_path):
    from advbn_aug.recipe import aggregate

    cfg = toy_config()
    std, adv = _result("standard"), _result("advbn")
    runs = []
    for seed, (d_mca, d_clean) in enumerate([(0.03, -0.01), (-0.01, 0.0), (0.02, -0.02)]):
        s = dict(std, seed=seed, mca=0.5 + 0.1 * seed, clean_acc_jpeg=0.8)
        runs += [s, dict(adv, seed=seed, mca=s["mca"] + d_mca, clean_acc_jpeg=0.8 + d_clean)]
    runs.append(dict(adv, seed=7, mca=0.9))  # a seed without a standard partner is left out of the pairing
    h = aggregate(runs, cfg, tmp_path, ["standard", "advbn"])["hypotheses"]["advbn_vs_standard"]
    p = h["paired"]
    assert p["seeds"] == [0, 1, 2] and p["mca_up"] == 2
    assert p["delta_mca"]["mean"] == pytest.approx(0.04 / 3)
    assert p["delta_clean_jpeg"]["mean"] == pytest.approx(-0.01)
    md = (tmp_path / "results.md").read_text()
    assert "mCA higher in 2 of 3 seeds" in md
    # Student t, 2 degrees of freedom: 1.333 +- 4.303 * 2.082 / sqrt(3) = [-3.84, +6.50] (in points)
    assert "Δ mCA +1.33 [95% CI -3.84, +6.50; includes 0]" in md, md
    assert "Runs still missing (0): none." in md
    assert (tmp_path / "evidence.png").is_file()  # the advbn_vs_standard intervals, plotted


def test_confidence_interval_matches_the_t_formula_and_says_when_it_excludes_zero():
    from advbn_aug.recipe.core.evidence import confidence_interval
    from advbn_aug.recipe.core.evidence import interval_text as _interval_text
    from advbn_aug.recipe.core.evidence import stat as _stat

    st = _stat([0.010, 0.012, 0.008, 0.011, 0.009])  # mean 0.01, sd 0.00158, n 5; t(0.975, 4) = 2.776
    lo, hi = confidence_interval(st)
    assert lo == pytest.approx(0.01 - 2.7764 * 0.0015811 / 5 ** 0.5, abs=1e-6)
    assert hi == pytest.approx(0.01 + 2.7764 * 0.0015811 / 5 ** 0.5, abs=1e-6)
    assert "excludes 0" in _interval_text("d", st)
    assert confidence_interval(_stat([0.5])) is None and "one seed" in _interval_text("d", _stat([0.5]))


def test_table_lists_missing_runs_and_the_commit_of_each_arm(tmp_path):
    from advbn_aug.recipe import aggregate
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS

    cfg = toy_config()
    std = _result("standard")
    runs = [dict(std, code={"commit": "a" * 40, "dirty": True}), dict(std, seed=1, code=None)]
    jobs = [(DEFAULT_ARMS["standard"], 0), (DEFAULT_ARMS["standard"], 1), (DEFAULT_ARMS["advbn"], 0)]
    doc = aggregate(runs, cfg, tmp_path, ["standard", "advbn"], jobs=jobs)
    assert doc["missing"] == ["advbn/seed0"] and doc["arms"]["standard"]["code"] == ["aaaaaaa+dirty", "unrecorded"]
    md = (tmp_path / "results.md").read_text()
    assert "Runs still missing (1): advbn/seed0." in md and "aaaaaaa+dirty, unrecorded" in md


def test_each_run_lists_the_commits_that_trained_and_evaluated_it(tmp_path):
    from advbn_aug.recipe import aggregate

    r = _result(eval_code={"commit": "c" * 40, "dirty": True},
                extras={"tta": {"key": "k", "code": {"commit": "d" * 40, "dirty": False}},
                        "stylized": {"key": "k"}})  # a mode added before modes recorded their commit
    doc = aggregate([r, _result(seed=1, code=None)], toy_config(), tmp_path, ["standard"])
    prov = doc["arms"]["standard"]["provenance"]
    assert prov["seed0"] == {"train": "bbbbbbb", "eval": "ccccccc+dirty",
                             "modes": {"stylized": "unrecorded", "tta": "ddddddd"}}
    assert prov["seed1"] == {"train": "unrecorded", "eval": "unrecorded", "modes": {}}
    md = (tmp_path / "results.md").read_text()
    assert ("trained bbbbbbb, evaluated ccccccc+dirty, modes: stylized unrecorded, tta ddddddd" in md), md
    assert "`standard/seed1/model.pt`: `" + "b" * 64 + "`; trained unrecorded, evaluated unrecorded\n" in md
