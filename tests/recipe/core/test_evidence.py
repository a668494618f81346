"""The evidence matrix (advbn_aug.recipe.core.evidence): metrics read from run results, paired differences with
Student-t intervals, the adversarial-route fallback, and its Markdown."""

from __future__ import annotations

import pytest

from advbn_aug.recipe.cifar10.metrics import CIFAR10_METRICS as METRICS  # a real benchmark's metrics as the fixture


def _run(arm: str, seed: int, mca: float, *, advbn: bool = False, adv_mca: float | None = None,
         stylized: float | None = None) -> dict:
    r = {"arm": {"name": arm, "advbn": advbn}, "seed": seed, "mca": mca, "clean_acc_jpeg": 0.8}
    extras: dict = {}
    if adv_mca is not None:
        extras["adv_route"] = {"mca": adv_mca, "clean_acc_jpeg": 0.79}
    if stylized is not None:
        extras["stylized"] = {"clean": {"none": {"mean": stylized, "accuracy": {"1": stylized - 0.1}}}}
    if extras:
        r["extras"] = extras
    return r


def test_paired_differences_match_a_hand_computation():
    from advbn_aug.recipe.core.evidence import evidence_matrix

    std = [_run("standard", s, m) for s, m in enumerate([0.60, 0.62, 0.61])]
    adv = [_run("advbn", s, m, advbn=True, adv_mca=m - 0.05) for s, m in enumerate([0.61, 0.63, 0.63])]
    ev = evidence_matrix({"standard": std, "advbn": adv}, {"h": ("advbn", "standard", "AdvBN vs standard")}, METRICS)
    cell = ev["h"]["mca"]  # differences 0.01, 0.01, 0.02: mean 0.01333, sd 0.00577, t(0.975, 2) = 4.3027
    half = 4.3027 * 0.0057735 / 3 ** 0.5
    assert cell["mean"] == pytest.approx(0.013333, abs=1e-6) and cell["seeds"] == [0, 1, 2]
    assert cell["lo"] == pytest.approx(0.013333 - half, abs=1e-5) and cell["hi"] == pytest.approx(0.013333 + half,
                                                                                                  abs=1e-5)
    assert cell["excludes_zero"] is False  # 3 seeds with this spread: the interval reaches below zero
    # the adversarial route of AdvBN is paired with the only (clean) route of the standard arm
    assert ev["h"]["mca_adv"]["mean"] == pytest.approx(0.013333 - 0.05, abs=1e-6)
    # metrics no run has are absent, not zero
    assert "stylized" not in ev["h"] and "mca_tta_full" not in ev["h"]


def test_a_consistent_difference_excludes_zero_and_missing_seeds_are_skipped():
    from advbn_aug.recipe.core.evidence import evidence_matrix

    std = [_run("standard", s, 0.6 + 0.01 * s, stylized=0.3) for s in range(5)]
    adv = [_run("advbn", s, 0.62 + 0.01 * s + 0.001 * (s % 2), advbn=True, stylized=0.33) for s in range(4)]
    ev = evidence_matrix({"standard": std, "advbn": adv}, {"h": ("advbn", "standard", "x")}, METRICS)
    assert ev["h"]["mca"]["n"] == 4 and ev["h"]["mca"]["excludes_zero"] is True
    assert ev["h"]["stylized"]["mean"] == pytest.approx(0.03)
    assert ev["h"]["stylized_1"]["mean"] == pytest.approx(0.03)
    # stylized through the adversarial route: AdvBN runs here have none, so no pairs (not the clean value)
    assert "stylized_adv" not in ev["h"]


def test_markdown_has_one_row_per_available_metric():
    from advbn_aug.recipe.core.evidence import arm_metrics, evidence_matrix, format_evidence

    by_arm = {"standard": [_run("standard", s, 0.6, stylized=0.3) for s in range(2)],
              "advbn": [_run("advbn", s, 0.61, advbn=True, adv_mca=0.58, stylized=0.31) for s in range(2)]}
    comparisons = {"h": ("advbn", "standard", "AdvBN vs standard")}
    doc = {"modes": arm_metrics(by_arm, METRICS), "evidence": evidence_matrix(by_arm, comparisons, METRICS)}
    lines = format_evidence(doc, comparisons, METRICS)
    text = "\n".join(lines)
    assert "| AdvBN vs standard |" in text
    assert text.count(f"| {METRICS['mca_adv'][0]} |") == 2  # once in the means, once in the differences
    assert METRICS["mca_tta_full"][0] not in text
    assert format_evidence({"modes": {}, "evidence": {}}, comparisons, METRICS) == []


def test_adversarial_route_rows_need_an_advbn_value():
    """Without any AdvBN run through its adversarial BNs, those rows would only repeat the clean route's numbers."""
    from advbn_aug.recipe.core.evidence import arm_metrics

    by_arm = {"standard": [_run("standard", 0, 0.6)], "advbn": [_run("advbn", 0, 0.61, advbn=True)]}
    rows = arm_metrics(by_arm, METRICS)
    assert "mca" in rows["standard"] and "mca_adv" not in rows["standard"] and "mca_adv" not in rows["advbn"]
    by_arm["advbn"] = [_run("advbn", 0, 0.61, advbn=True, adv_mca=0.58)]
    rows = arm_metrics(by_arm, METRICS)
    assert rows["standard"]["mca_adv"]["mean"] == 0.6 and rows["advbn"]["mca_adv"]["mean"] == 0.58
