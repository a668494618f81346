"""Robustness metrics against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from advbn_aug.eval.metrics import (
    ALEXNET_CLEAN_ERROR,
    ALEXNET_ERRORS,
    Baseline,
    accuracy,
    corruption_error,
    load_baseline,
    mean_corruption_accuracy,
    relative_corruption_error,
    summarize,
)

TABLE = {"fog": {1: 0.8, 2: 0.6}, "snow": {1: 0.5, 2: 0.3}}
BASE = Baseline("base", clean_error=0.2, errors={"fog": {1: 0.4, 2: 0.6}, "snow": {1: 0.5, 2: 0.9}})


def test_accuracy_from_labels_and_logits():
    assert accuracy(np.array([1, 2, 3, 0]), np.array([1, 2, 0, 0])) == 0.75
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 1.0]])
    assert accuracy(logits, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same length"):
        accuracy(np.zeros(3), np.zeros(4))


def test_hand_computed_summary():
    s = summarize(TABLE, clean_accuracy=0.9, baseline=BASE)
    assert mean_corruption_accuracy(TABLE) == pytest.approx((0.8 + 0.6 + 0.5 + 0.3) / 4)
    assert s["mean_corruption_error"] == pytest.approx(1 - 0.55)
    assert s["per_corruption_accuracy"] == pytest.approx({"fog": 0.7, "snow": 0.4})
    assert s["per_severity_accuracy"] == pytest.approx({1: 0.65, 2: 0.45})
    # CE = sum of errors / sum of baseline errors
    ce_fog, ce_snow = (0.2 + 0.4) / (0.4 + 0.6), (0.5 + 0.7) / (0.5 + 0.9)
    assert s["ce"] == pytest.approx({"fog": ce_fog, "snow": ce_snow})
    assert s["mce"] == pytest.approx((ce_fog + ce_snow) / 2)
    # relative CE = sum (E - E_clean) / sum (E_base - E_base_clean), E_clean = 0.1
    rel_fog = ((0.2 - 0.1) + (0.4 - 0.1)) / ((0.4 - 0.2) + (0.6 - 0.2))
    rel_snow = ((0.5 - 0.1) + (0.7 - 0.1)) / ((0.5 - 0.2) + (0.9 - 0.2))
    assert s["relative_ce"] == pytest.approx({"fog": rel_fog, "snow": rel_snow})
    assert s["relative_mce"] == pytest.approx((rel_fog + rel_snow) / 2)
    assert corruption_error({1: 0.2, 2: 0.4}, 1.0) == pytest.approx(ce_fog)
    assert relative_corruption_error({1: 0.2, 2: 0.4}, 0.1, 1.0, 0.2) == pytest.approx(rel_fog)


def test_no_baseline_means_no_ce():
    s = summarize(TABLE)
    assert "ce" not in s and "mce" not in s


def test_alexnet_table_and_severity_rules():
    assert len(ALEXNET_ERRORS) == 15 and ALEXNET_ERRORS["gaussian_noise"] == 0.886428
    assert ALEXNET_ERRORS["jpeg_compression"] == 0.6065 and 0.43 < ALEXNET_CLEAN_ERROR < 0.44
    alex = Baseline.alexnet()
    full = {"fog": {s: 0.5 for s in range(1, 6)}, "spatter": {s: 0.5 for s in range(1, 6)}}
    s = summarize(full, clean_accuracy=0.8, baseline=alex)
    assert s["ce"] == pytest.approx({"fog": 0.5 / 0.819324})  # spatter is not in the AlexNet table
    assert s["mce_corruptions"] == ["fog"]
    assert s["relative_ce"]["fog"] == pytest.approx((0.5 - 0.2) / (0.819324 - ALEXNET_CLEAN_ERROR))
    # the AlexNet table is a 5-severity mean: no CE on a severity subset
    assert summarize({"fog": {1: 0.5}}, 0.8, alex)["ce"] == {}


def test_load_baseline_from_results_json(tmp_path):
    path = tmp_path / "base.json"
    path.write_text(json.dumps({"name": "r20", "clean_accuracy": 0.9, "accuracy": {"fog": {"1": 0.75}}}))
    b = load_baseline(path)
    assert b.name == "r20" and b.clean_error == pytest.approx(0.1) and b.errors == {"fog": {1: 0.25}}
    assert load_baseline("alexnet").mean_errors == ALEXNET_ERRORS
    with pytest.raises(FileNotFoundError, match="does not exist.*alexnet"):
        load_baseline(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="no 'accuracy' table"):
        load_baseline(tmp_path / "bad.json")
