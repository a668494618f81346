"""advbn_aug.recipe.core.table: the table parts every benchmark shares (runs by arm, row facts, missing runs, the
exported-models section, cost cells, commit labels, the files written)."""

from __future__ import annotations

import json
import logging

import pytest

from advbn_aug.recipe.core import table as tb
from advbn_aug.recipe.core.config import ArmConfig


def _run(arm: str, seed: int, **kw) -> dict:
    r = {"arm": {"name": arm}, "seed": seed, "train_seconds": 10.0 + seed, "eval_seconds": 2.0,
         "sha256": f"{arm}{seed}".ljust(8, "0")}
    r.update(kw)
    return r


def test_group_by_arm_keeps_the_given_order_then_the_rest_alphabetically():
    runs = [_run("zeta", 0), _run("advbn", 0), _run("standard", 1), _run("alpha", 0), _run("standard", 0)]
    by_arm, order = tb.group_by_arm(runs, ["standard", "missing", "advbn"])
    assert order == ["standard", "advbn", "alpha", "zeta"]  # an arm without runs is left out
    assert [r["seed"] for r in by_arm["standard"]] == [1, 0]


def test_run_devices_counts_runs_per_device_and_is_empty_when_none_recorded():
    assert tb.run_devices([_run("a", 0), _run("a", 1)]) == {}
    runs = [_run("a", 0, device_name="H100"), _run("a", 1, device_name="H100"), _run("b", 0)]
    assert tb.run_devices(runs) == {"H100": 2, "cpu (not recorded)": 1}


def test_commit_label():
    assert tb.commit_label(None) == tb.commit_label({}) == tb.commit_label({"commit": None}) == "unrecorded"
    assert tb.commit_label({"commit": "0123456789abcdef", "dirty": False}) == "0123456"
    assert tb.commit_label({"commit": "0123456789abcdef", "dirty": True}) == "0123456+dirty"


def test_run_facts_and_model_lines_name_the_commits_behind_each_run():
    code, later = {"commit": "aaaaaaa111"}, {"commit": "bbbbbbb222", "dirty": True}
    rs = [_run("advbn", 0, code=code, eval_code=later, extras={"stylized": {"code": later}}), _run("advbn", 1)]
    facts = tb.run_facts(rs)
    assert facts["train_seconds"] == {"mean": 10.5, "std": facts["train_seconds"]["std"], "n": 2}
    assert facts["eval_seconds"] == {"mean": 2.0, "std": 0.0, "n": 2}
    assert facts["sha256"] == {"seed0": "advbn000", "seed1": "advbn100"}
    assert facts["code"] == ["aaaaaaa", "unrecorded"]
    assert facts["provenance"]["seed0"] == {"train": "aaaaaaa", "eval": "bbbbbbb+dirty",
                                            "modes": {"stylized": "bbbbbbb+dirty"}}
    lines = tb.model_lines({"advbn": facts, "old": {"sha256": {"seed0": "cafe"}}})
    assert "- `advbn/seed0/model.pt`: `advbn000`; trained aaaaaaa, evaluated bbbbbbb+dirty, modes: stylized " \
           "bbbbbbb+dirty" in lines
    assert "- `advbn/seed1/model.pt`: `advbn100`; trained unrecorded, evaluated unrecorded" in lines
    assert "- `old/seed0/model.pt`: `cafe`" in lines  # a row without provenance lists its digest alone


def test_missing_runs_lists_each_job_without_a_result():
    jobs = [(ArmConfig("standard"), 0), (ArmConfig("standard"), 1), (ArmConfig("advbn"), 0)]
    assert tb.missing_runs([_run("standard", 1)], jobs) == ["standard/seed0", "advbn/seed0"]
    assert tb.missing_runs([_run("standard", 0), _run("standard", 1), _run("advbn", 0)], jobs) == []


def test_cost_cells_compare_with_the_standard_arm():
    arms = {"standard": {"train_seconds": {"mean": 100.0}}}
    assert tb.cost_cells(arms, {"train_seconds": {"mean": 250.0}, "code": ["abc1234", "def5678"]}) == \
        "250 | 2.50x | abc1234, def5678"
    assert tb.cost_cells({}, {"train_seconds": {"mean": 250.0}}) == "250 | - | unrecorded"  # no standard arm


def test_delta_cell_marks_a_difference_of_means_over_different_seeds():
    def row(seeds, mean):
        return {"seeds": seeds, "mca": {"mean": mean, "std": 0.0, "n": len(seeds)}}

    arms = {"standard": row([0, 1, 2], 0.50), "same": row([2, 0, 1], 0.52), "short": row([0, 1], 0.53),
            "none": {"seeds": [0]}}
    assert tb.delta_cell(arms, "same", "mca") == "+2.00"  # the same seeds in any order: no mark
    assert tb.delta_cell(arms, "short", "mca") == "+3.00†"
    assert tb.delta_cell(arms, "standard", "mca") == "-" and tb.delta_cell(arms, "none", "mca") == "-"
    assert tb.delta_cell({"short": arms["short"]}, "short", "mca") == "-"  # no standard arm


def test_fmt_stat():
    assert tb.fmt_stat(None) == tb.fmt_stat({}) == "-"
    assert tb.fmt_stat({"mean": 0.12345, "std": 0.01, "n": 1}) == "12.35"  # one value: no spread
    assert tb.fmt_stat({"mean": 0.12345, "std": 0.01, "n": 3}) == "12.35 ± 1.00"
    assert tb.fmt_stat({"mean": 0.012, "std": 0.0, "n": 1}, signed=True) == "+1.20"
    assert tb.fmt_stat({"mean": -0.012, "std": 0.0, "n": 1}, signed=True) == "-1.20"


def test_write_table_files_writes_every_file_and_a_failing_chart_only_warns(tmp_path, caplog):
    runs = [_run("standard", 1), _run("advbn", 0), _run("standard", 0)]
    by_arm, order = tb.group_by_arm(runs, ["standard", "advbn"])
    doc = {"arms": {"standard": {}, "advbn": {}}}
    drawn = []

    def plot(d, path):
        drawn.append(d)
        path.write_bytes(b"png")

    out = tmp_path / "new" / "table"
    tb.write_table_files(out, doc, "# table\n", by_arm, order, plot)
    assert json.loads((out / "results.json").read_text()) == doc
    assert (out / "results.md").read_text() == "# table\n" and (out / "results.png").read_bytes() == b"png"
    assert drawn == [doc] and not (out / "evidence.png").exists()  # no comparisons: no forest plot
    assert (out / "sha256.txt").read_text().splitlines() == [  # arm order, then seed order
        "standard0  standard/seed0/model.pt", "standard1  standard/seed1/model.pt", "advbn000  advbn/seed0/model.pt"]

    def broken(d, path):
        raise RuntimeError("no display")

    with caplog.at_level(logging.WARNING, logger="advbn_aug.recipe"):
        tb.write_table_files(tmp_path / "b", doc, "", by_arm, order, broken)
    assert (tmp_path / "b" / "results.json").is_file() and not (tmp_path / "b" / "results.png").exists()
    assert "could not write results.png: no display" in caplog.text


def test_write_table_files_needs_the_benchmarks_metrics_with_comparisons(tmp_path):
    """Core knows no benchmark's metrics: comparisons without them would label evidence.png with nothing; refused
    before any file is written."""
    by_arm, order = tb.group_by_arm([_run("standard", 0)], ["standard"])
    with pytest.raises(ValueError, match="pass the benchmark's metrics with comparisons"):
        tb.write_table_files(tmp_path / "t", {}, "", by_arm, order, lambda d, p: None, {"h": ("a", "b", "x")})
    assert not (tmp_path / "t").exists()
