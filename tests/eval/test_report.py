"""Reports of a corruption evaluation (advbn_aug.eval.report): the Markdown table and the written files."""

from __future__ import annotations

import json

import pytest

from advbn_aug.eval.metrics import Baseline, summarize
from advbn_aug.eval.report import format_markdown, write_report
from advbn_aug.eval.results import EvalResult

pytest.importorskip("matplotlib")

_ACC = {"fog": {1: 0.75, 5: 0.25}, "contrast": {1: 0.5}}
_BASE = Baseline("coin", 0.5, {"fog": {1: 0.5, 5: 1.0}, "contrast": {1: 0.5}})


def _result(baseline: Baseline | None = None) -> EvalResult:
    return EvalResult("tiny", 0.875, _ACC, summarize(_ACC, 0.875, baseline), {}, 8, notes=["two corruptions"])


def test_markdown_table_without_a_baseline():
    md = format_markdown(_result())
    assert md.startswith("# Corruption robustness: tiny\n")
    assert "- clean accuracy: 87.50%" in md and "- note: two corruptions" in md and "mCE" not in md
    assert "| corruption | s1 | s5 | mean |" in md
    assert "| fog | 75.00 | 25.00 | 50.00 |" in md
    assert "| contrast | 50.00 | – | 50.00 |" in md, "a severity that was not evaluated"
    assert "| **mean** | 62.50 | 25.00 | 50.00 |" in md


def test_markdown_with_a_baseline_adds_ce_columns():
    md = format_markdown(_result(_BASE))
    # CE = sum of errors / the baseline's: fog 1.0 / 1.5, contrast 0.5 / 0.5; relative CE subtracts the clean errors
    # (fog (1.0 - 2 * 0.125) / (1.5 - 2 * 0.5); contrast's baseline has no margin over its clean error: none)
    assert "- mCE (baseline coin): 83.3" in md and "- relative mCE: 150.0" in md
    assert "| corruption | s1 | s5 | mean | CE | rel. CE |" in md
    assert "| fog | 75.00 | 25.00 | 50.00 | 66.7 | 150.0 |" in md
    assert "| contrast | 50.00 | – | 50.00 | 100.0 | – |" in md
    assert "| **mean** | 62.50 | 25.00 | 50.00 | 83.3 | 150.0 |" in md


def test_write_report_files(tmp_path):
    paths = write_report(_result(), tmp_path / "r")
    assert set(paths) == {"json", "markdown", "heatmap"}
    assert EvalResult.from_dict(json.loads(paths["json"].read_text())).accuracy == _ACC
    assert paths["markdown"].read_text() == format_markdown(_result())
    assert paths["heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths = write_report(_result(_BASE), tmp_path / "r", _BASE)
    assert paths["baseline"] == tmp_path / "r" / "baseline.png" and paths["baseline"].stat().st_size > 0
