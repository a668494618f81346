"""recipes/cifar10/gather_one_set.py: only runs evaluated on the named Stylized set are gathered, later roots win,
and bad input stops with a message that names the fix."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "recipes" / "cifar10" / "gather_one_set.py"
SET_A = "74e373bf5a044df5f1572549277897e2fe83915d8af44a83990b794dddc32ee6"
SET_B = "0123456789abcdef" * 4


def _script():
    spec = importlib.util.spec_from_file_location("gather_one_set", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(root: Path, arm: str, seed: int, set_sha: str | None, mca: float) -> None:
    extras = {} if set_sha is None else {"stylized": {"set_sha256": set_sha, "clean": 0.4}}
    path = root / arm / f"seed{seed}" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"arm": {"name": arm}, "seed": seed, "mca": mca, "extras": extras}))


def test_gathers_only_the_named_set_and_later_roots_win(tmp_path):
    committed, rerun, out = tmp_path / "committed", tmp_path / "rerun", tmp_path / "out"
    _run(committed, "standard", 0, SET_B, 0.60)      # another machine's set: left out
    _run(committed, "standard", 4, SET_A, 0.61)
    _run(committed, "dsu", 0, None, 0.62)            # no Stylized entry: left out
    _run(committed, "dsu_advbn", 0, SET_A, 0.63)
    _run(rerun, "standard", 0, SET_A, 0.64)          # the retrained run on set A fills the gap
    _run(rerun, "standard", 4, SET_A, 0.65)          # and a later root replaces an earlier one
    chosen = _script().gather(SET_A[:12], out, [committed, rerun])
    assert sorted(chosen) == ["dsu_advbn/seed0", "standard/seed0", "standard/seed4"]
    got = {p.parent.parent.name + "/" + p.parent.name: json.loads(p.read_text())["mca"]
           for p in (out / "runs").glob("*/seed*/result.json")}
    assert got == {"dsu_advbn/seed0": 0.63, "standard/seed0": 0.64, "standard/seed4": 0.65}


def test_bad_input_names_the_problem(tmp_path):
    mod = _script()
    with pytest.raises(SystemExit, match="too short"):
        mod.gather("74e3", tmp_path / "out", [tmp_path])
    with pytest.raises(SystemExit, match="not a folder of runs"):
        mod.gather(SET_A, tmp_path / "out", [tmp_path / "missing"])
    assert not (tmp_path / "out").exists()
