"""advbn_aug.recipe.pacs.table: the PACS table on hand-made results (pairing by seed, the adversarial route, the EMA
weights and the headline rule)."""

from __future__ import annotations

import pytest


def _run(arm: str, seed: int, acc: dict[str, float], adv: dict[str, float] | None = None,
         ema: dict[str, float] | None = None, ema_adv: dict[str, float] | None = None):
    from advbn_aug.recipe.pacs.config import PACS_ARMS

    def fields(a):
        return {"acc": a, "mean_acc": sum(a.values()) / len(a)}

    r = {"arm": PACS_ARMS[arm].to_dict(), "seed": seed, "sha256": f"{seed:x}" * 64, "train_seconds": 10.0,
         "eval_seconds": 2.0, **fields(acc), "code": None}
    if adv is not None:
        r["extras"] = {"adv_route": fields(adv)}
        if ema_adv is not None:
            r["extras"]["adv_route"]["ema"] = fields(ema_adv)
    if ema is not None:
        r["ema"] = {"decay": 0.991, **fields(ema)}
    return r


def test_table_pairs_by_seed_and_routes(tmp_path):
    from advbn_aug.recipe.pacs.config import PACSConfig
    from advbn_aug.recipe.pacs.table import aggregate_pacs

    cfg = PACSConfig(seeds=[0, 1, 2], arms=["standard", "advbn"])
    runs = []
    for s in range(3):
        base = {"art_painting": 0.6 + s / 100, "cartoon": 0.3, "sketch": 0.2 + s / 50}
        runs.append(_run("standard", s, base))
        runs.append(_run("advbn", s, {k: v + 0.02 + 0.001 * s for k, v in base.items()},
                         {k: v + 0.05 for k, v in base.items()}))
    doc = aggregate_pacs(runs, cfg, tmp_path, ["standard", "advbn"])
    cell = doc["evidence"]["advbn_vs_standard"]["mean"]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(0.021) and cell["lo"] > 0
    adv = doc["evidence"]["advbn_vs_standard"]["sketch_adv"]
    assert adv["mean"] == pytest.approx(0.05) and adv["excludes_zero"]
    assert doc["arms"]["advbn"]["mean_adv"]["mean"] == pytest.approx(doc["arms"]["standard"]["mean"]["mean"] + 0.05)
    text = (tmp_path / "results.md").read_text()
    assert "128 px" in text and "| standard | 3 |" in text and "AdvBN vs standard" in text
    for name in ("results.json", "results.png", "sha256.txt"):
        assert (tmp_path / name).is_file()


def _loo_runs(ema_shift: dict[int, float]):
    """Leave-one-out sketch results of standard and AdvBN, 3 seeds: AdvBN +2 points on the final weights, +3 on the
    average (both routes); the standard arm's EMA accuracy moved by ``ema_shift[seed]``."""
    runs = []
    for s in range(3):
        base = 0.30 + 0.04 * s
        ema = base + ema_shift[s]
        runs.append(_run("standard", s, {"sketch": base}, ema={"sketch": ema}))
        runs.append(_run("advbn", s, {"sketch": base + 0.02}, {"sketch": base + 0.01}, ema={"sketch": ema + 0.03},
                         ema_adv={"sketch": ema + 0.04}))
    for r in runs:
        for part in (r, r.get("ema", {}), r.get("extras", {}).get("adv_route", {})):
            if part:
                part["val_acc"] = 0.9
    return runs


def test_table_reports_both_weights_and_the_headline_rule(tmp_path):
    from advbn_aug.recipe.pacs.config import PACS_LOO_SKETCH
    from advbn_aug.recipe.pacs.table import HEADLINE_RULE, aggregate_pacs, pacs_headline

    cfg = PACS_LOO_SKETCH.with_overrides(arms=["standard", "advbn"])
    # the average's accuracy varies less over the standard arm's seeds (0.30, 0.34, 0.38 -> 0.32, 0.34, 0.36)
    runs = _loo_runs({0: 0.02, 1: 0.0, 2: -0.02})
    doc = aggregate_pacs(runs, cfg, tmp_path, ["standard", "advbn"])
    h = doc["headline"]
    assert h["weights"] == "ema" and h["seeds"] == [0, 1, 2] and h["std"]["ema"] < h["std"]["final"]
    assert h == pacs_headline([r for r in runs if r["arm"]["name"] == "standard"])  # the standard arm alone
    ev = doc["evidence"]["advbn_vs_standard"]
    assert ev["sketch"]["mean"] == pytest.approx(0.02) and ev["ema_sketch"]["mean"] == pytest.approx(0.03)
    assert ev["ema_sketch_adv"]["mean"] == pytest.approx(0.04) and ev["ema_mean_adv"]["excludes_zero"]
    assert doc["arms"]["advbn"]["ema_val"]["mean"] == pytest.approx(0.9)
    text = (tmp_path / "results.md").read_text()
    assert HEADLINE_RULE in text and "headline: **EMA weights**" in text
    ema_table, final_table = text.index("### Weight average (EMA, decay 0.991"), text.index("### Final weights")
    assert ema_table < final_table  # the headline's table first
    assert "| standard | 3 |" in text and "EMA, sketch, adversarial BN" in text and "| source crossval" in text
    # spread larger on the average: the final weights are the headline; a single seed decides nothing
    doc = aggregate_pacs(_loo_runs({0: -0.02, 1: 0.0, 2: 0.02}), cfg, tmp_path, ["standard", "advbn"])
    assert doc["headline"]["weights"] == "final"
    text = (tmp_path / "results.md").read_text()
    assert text.index("### Final weights") < text.index("### Weight average")
    one = [r for r in _loo_runs({0: 0.0, 1: 0.0, 2: 0.0}) if r["seed"] == 0]
    assert pacs_headline(one)["weights"] is None
    doc = aggregate_pacs(one, cfg, tmp_path, ["standard", "advbn"])
    assert "not decided yet" in (tmp_path / "results.md").read_text()


def test_table_without_weight_averaging_has_no_ema_section(tmp_path):
    from advbn_aug.recipe.pacs.config import PACSConfig
    from advbn_aug.recipe.pacs.table import aggregate_pacs

    runs = [_run("standard", s, {"art_painting": 0.5, "cartoon": 0.3, "sketch": 0.2 + s / 50}) for s in range(2)]
    doc = aggregate_pacs(runs, PACSConfig(arms=["standard"]), tmp_path, ["standard"])
    text = (tmp_path / "results.md").read_text()
    assert doc["headline"]["weights"] is None and "EMA" not in text and "Headline" not in text
    assert not any(k.startswith("ema_") for k in doc["modes"]["standard"])


def test_evidence_plot_drops_the_mean_row_for_one_target(tmp_path, monkeypatch):
    """Leave-one-out has one target: its 'mean' rows would repeat the target's rows in evidence.png."""
    from advbn_aug.recipe.core import table as core_table
    from advbn_aug.recipe.pacs.config import PACS_LOO_SKETCH
    from advbn_aug.recipe.pacs.table import aggregate_pacs, pacs_metrics, pacs_plot_rows

    drawn = []
    monkeypatch.setattr(core_table, "plot_evidence", lambda ev, comps, labels, path, rows: drawn.append(list(rows)))
    aggregate_pacs(_loo_runs({0: 0.0, 1: 0.01, 2: 0.0}), PACS_LOO_SKETCH.with_overrides(arms=["standard", "advbn"]),
                   tmp_path, ["standard", "advbn"])
    assert drawn == [["sketch", "sketch_adv", "val", "ema_sketch", "ema_sketch_adv", "ema_val"]]
    three = pacs_metrics(["art_painting", "cartoon", "sketch"])
    assert pacs_plot_rows(three, ["art_painting", "cartoon", "sketch"]) == list(three)  # the mean of three stays


def test_delta_column_marks_an_arm_short_of_seeds(tmp_path):
    """An arm with fewer seeds than standard: its Δ cell is a difference of means over other seeds, and says so."""
    from advbn_aug.recipe.core.table import UNPAIRED_NOTE
    from advbn_aug.recipe.pacs.config import PACS_LOO_SKETCH
    from advbn_aug.recipe.pacs.table import aggregate_pacs

    cfg = PACS_LOO_SKETCH.with_overrides(arms=["standard", "advbn"])
    runs = [r for r in _loo_runs({0: 0.0, 1: 0.0, 2: 0.0}) if r["arm"]["name"] == "standard" or r["seed"] < 2]
    doc = aggregate_pacs(runs, cfg, tmp_path, ["standard", "advbn"])
    text = (tmp_path / "results.md").read_text()
    # means 0.34 (3 seeds) vs 0.34 (seeds 0-1 + 0.02): +2.00 paired, but the means differ by 0.0
    assert doc["evidence"]["advbn_vs_standard"]["sketch"]["mean"] == pytest.approx(0.02)
    assert "| advbn | 2 |" in text and "0.00†" in text and UNPAIRED_NOTE in text
    doc = aggregate_pacs(_loo_runs({0: 0.0, 1: 0.0, 2: 0.0}), cfg, tmp_path, ["standard", "advbn"])
    text = (tmp_path / "results.md").read_text()
    assert "+2.00 |" in text and "†" not in text and UNPAIRED_NOTE not in text
