"""Result types (advbn_aug.eval.results): JSON round trips, pinned-hash checks and the written files."""

from __future__ import annotations

import json

from advbn_aug.eval.metrics import summarize
from advbn_aug.eval.results import EvalResult, StylizedResult, strength_keys


def _eval_result() -> EvalResult:
    accuracy = {"fog": {1: 0.75, 5: 0.25}, "contrast": {1: 0.5, 5: 0.0}}
    return EvalResult("tiny", 0.875, accuracy, summarize(accuracy, 0.875), {"severities": [1, 5]}, 8, cache_hits=1,
                      notes=["a note"])


def _stylized(**kw) -> StylizedResult:
    base = dict(name="tiny", num_images=6, clean_accuracy=0.5, accuracy={0.5: 0.5, 1.0: 0.25},
                config={"seed": 3, "style_domain": "art_painting"}, sha256={0.5: "aa", 1.0: "bb"}, set_sha256="cc")
    return StylizedResult(**{**base, **kw})


def test_eval_result_json_round_trip(tmp_path):
    r = _eval_result()
    text = json.dumps(r.to_dict())
    assert '"fog": {"1": 0.75, "5": 0.25}' in text, "severity keys are strings in JSON"
    back = EvalResult.from_dict(json.loads(text))
    assert back.accuracy == r.accuracy and list(back.accuracy["fog"]) == [1, 5]
    assert back.notes == ["a note"] and back.cache_hits == 1 and back.clean_accuracy == 0.875
    (tmp_path / "results.json").write_text(text)
    assert EvalResult.load(tmp_path / "results.json") == back


def test_strength_keys_are_g_formatted():
    assert strength_keys({0.5: 1, 1.0: 2, 0.25: 3}) == {"0.5": 1, "1": 2, "0.25": 3}
    assert strength_keys({}) == {}


def test_stylized_pins_checked_only_where_pinned():
    assert _stylized().matches_expected is None and _stylized().mismatch_warning() is None
    assert _stylized(expected_sha256={0.25: "zz"}).matches_expected is None, "no evaluated strength is pinned"
    assert _stylized(expected_sha256={1.0: "bb"}).matches_expected is True
    bad = _stylized(expected_sha256={0.5: "aa", 1.0: "ff"})
    assert bad.matches_expected is False
    assert "strength 1: generated bb, pinned ff" in bad.mismatch_warning() and "strength 0.5" not in \
        bad.mismatch_warning()


def test_stylized_to_dict_markdown_and_write(tmp_path):
    r = _stylized(expected_sha256={1.0: "ff"})
    d = json.loads(json.dumps(r.to_dict()))
    assert d["accuracy"] == {"0.5": 0.5, "1": 0.25} and d["sha256"] == {"0.5": "aa", "1": "bb"}
    assert d["expected_sha256"] == {"1": "ff"} and d["matches_expected"] is False and d["set_sha256"] == "cc"
    md = r.to_markdown()
    assert md.startswith("## Stylized-CIFAR-10: tiny\n") and "seed 3" in md and "PACS art_painting" in md
    assert "| clean subset | 50.00 | – |" in md and "| strength 1 | 25.00 | 25.00 |" in md
    assert "**the Stylized-CIFAR-10 set differs from the pinned set" in md
    assert _stylized().to_dict()["expected_sha256"] is None
    paths = r.write(tmp_path / "out")
    assert [p.name for p in paths] == ["stylized.json", "stylized.md"]
    assert json.loads(paths[0].read_text()) == d and paths[1].read_text() == md
