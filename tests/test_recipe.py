"""The CIFAR-10 recipe runner at toy scale: results files, exported state_dicts, resuming, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advbn_aug.data import shared_data_dir

pytestmark = pytest.mark.skipif(
    shared_data_dir() is None or not (shared_data_dir() / "cifar10" / "train_jpeg.npz").is_file(),
    reason="needs the shared CIFAR-10 data and weights (../shared/data or $ADVBN_DATA)")

REPO = Path(__file__).resolve().parents[1]


def _toy(**kw):
    from advbn_aug.recipe import RecipeConfig

    base = dict(arms=["pretrained", "standard", "advbn"], seeds=[0], steps=2, batch_size=8, train_subset=40,
                checkpoint_interval=1, eval_images=16, corruptions=["gaussian_noise", "contrast"], severities=[3],
                clean_test_images=32, lossless_images=16, eval_batch_size=32,
                advbn={"layer": "layer1", "eps": 1.1, "step_size": 0.2, "steps": 2})
    base.update(kw)
    return RecipeConfig(**base)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from advbn_aug.recipe import run_recipe

    root = tmp_path_factory.mktemp("recipe")
    cfg = _toy()
    doc = run_recipe(cfg, output=root / "results", runs_dir=root / "runs", progress=False,
                     cache_dir=str(root / "cache"))
    return cfg, root, doc


def test_toy_run_writes_results_and_plain_state_dicts(toy_run):
    from advbn_aug.recipe import pretrained_keys, sha256_file

    cfg, root, doc = toy_run
    out = root / "results"
    for name in ("results.json", "results.md", "results.png", "sha256.txt"):
        assert (out / name).is_file(), name
    data = json.loads((out / "results.json").read_text())
    assert list(data["arms"]) == ["pretrained", "standard", "advbn"]
    assert "advbn_vs_standard" in data["hypotheses"]
    keys = pretrained_keys(20)
    for arm in ("pretrained", "standard", "advbn"):
        run_dir = root / "runs" / arm / "seed0"
        state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
        assert list(state) == keys  # exactly the pretrained file's keys, in its order (no dual-BN / counters)
        res = json.loads((run_dir / "result.json").read_text())
        assert res["sha256"] == sha256_file(run_dir / "model.pt")
        assert (out / "sha256.txt").read_text().count(res["sha256"]) == 1
        assert set(res["per_corruption"]) == {"gaussian_noise", "contrast"}
        assert res["corruption_images"] == 16 and res["clean_images_jpeg"] == 32 and res["lossless_images"] == 16
        assert 0.0 <= res["mca"] <= 1.0 and "jpeg_gap" in res
        assert not (run_dir / "ckpt.pt").exists()
    # the frozen prefix is identical to the pretrained weights in every arm; the suffix moved
    ref = torch.load(root / "runs" / "pretrained" / "seed0" / "model.pt", weights_only=True)
    adv = torch.load(root / "runs" / "advbn" / "seed0" / "model.pt", weights_only=True)
    std = torch.load(root / "runs" / "standard" / "seed0" / "model.pt", weights_only=True)
    for k in keys:
        if k.startswith(("conv1", "bn1", "layer1")):
            assert torch.equal(ref[k], adv[k]) and torch.equal(ref[k], std[k]), k
    assert not torch.equal(ref["linear.weight"], std["linear.weight"])
    assert "| advbn | 1 |" in (out / "results.md").read_text()


def test_resume_skips_finished_runs(toy_run, monkeypatch):
    import advbn_aug.recipe as recipe

    cfg, root, doc = toy_run

    def boom(*a, **k):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(recipe, "_train", boom)
    monkeypatch.setattr(recipe, "_evaluate", boom)
    doc2 = recipe.run_recipe(cfg, output=root / "results", runs_dir=root / "runs", progress=False,
                             cache_dir=str(root / "cache"))
    assert doc2["arms"]["advbn"]["mca"] == doc["arms"]["advbn"]["mca"]


def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch):
    import advbn_aug.recipe as recipe

    cfg = _toy(arms=["advbn"], steps=3, checkpoint_interval=1, corruptions=["contrast"])
    ref = recipe.run_recipe(cfg, output=tmp_path / "a", runs_dir=tmp_path / "ra", progress=False,
                            cache_dir=str(tmp_path / "cache"))
    real, calls = recipe._random_crop_flip, {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated stop at step 3")
        return real(x)

    monkeypatch.setattr(recipe, "_random_crop_flip", flaky)
    with pytest.raises(KeyboardInterrupt):
        recipe.run_recipe(cfg, output=tmp_path / "b", runs_dir=tmp_path / "rb", progress=False,
                          cache_dir=str(tmp_path / "cache"))
    ck = torch.load(tmp_path / "rb" / "advbn" / "seed0" / "ckpt.pt", weights_only=False)
    assert ck["step"] == 2
    assert not (tmp_path / "rb" / "advbn" / "seed0" / "run.lock").exists()
    monkeypatch.setattr(recipe, "_random_crop_flip", real)
    out = recipe.run_recipe(cfg, output=tmp_path / "b", runs_dir=tmp_path / "rb", progress=False,
                            cache_dir=str(tmp_path / "cache"))
    a = torch.load(tmp_path / "ra" / "advbn" / "seed0" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "rb" / "advbn" / "seed0" / "model.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert out["arms"]["advbn"]["seeds"] == ref["arms"]["advbn"]["seeds"]


def test_unknown_arm_and_missing_data(tmp_path):
    from advbn_aug.recipe import RecipeConfig, run_recipe

    with pytest.raises(ValueError, match="unknown arm"):
        run_recipe(_toy(arms=["standard", "nope"]), output=tmp_path / "o", runs_dir=tmp_path / "r")
    with pytest.raises(FileNotFoundError):
        run_recipe(_toy(arms=["standard"]), output=tmp_path / "o", runs_dir=tmp_path / "r",
                   data_dir=tmp_path / "no_such_folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        run_recipe(_toy(arms=["standard"]), output=tmp_path / "o", runs_dir=tmp_path / "r", data_dir=empty)
    with pytest.raises(ValueError):
        RecipeConfig(model="resnet18")
    with pytest.raises(ValueError):
        RecipeConfig(steps=0)
    with pytest.raises(ValueError, match="unknown RecipeConfig keys"):
        RecipeConfig.from_dict({"stepz": 3})


def test_cli_errors(tmp_path, capsys):
    from advbn_aug.cli import main

    with pytest.raises(SystemExit):
        main(["recipe", "mnist"])
    with pytest.raises(ValueError, match="unknown arm"):
        main(["recipe", "cifar10", "--tiny", "--arms", "nope", "--output", str(tmp_path / "o"),
              "--runs-dir", str(tmp_path / "r")])
    with pytest.raises(ValueError, match="unknown corruption"):
        main(["recipe", "cifar10", "--tiny", "--corruptions", "rain", "--output", str(tmp_path / "o"),
              "--runs-dir", str(tmp_path / "r")])
    assert main(["recipe", "imagenet"]) == 2


def test_recipe_yaml_files_match_builtins():
    from advbn_aug.recipe_config import DEFAULT_ARMS, FULL, SHORT, TINY, RecipeConfig, load_arms

    folder = REPO / "recipes" / "cifar10" / "configs"
    if not folder.is_dir():
        pytest.skip("recipes/cifar10/configs not in this checkout")
    arms = load_arms(folder / "arms")
    assert {k: v.to_dict() for k, v in arms.items()} == {k: v.to_dict() for k, v in DEFAULT_ARMS.items()}
    assert RecipeConfig.from_yaml(folder / "full.yaml") == FULL
    assert RecipeConfig.from_yaml(folder / "tiny.yaml") == TINY
    assert RecipeConfig.from_yaml(folder / "short.yaml") == SHORT


def test_deepaugment_data_is_made_once_and_cached(tmp_path, monkeypatch):
    import numpy as np

    import advbn_aug.image as image
    from advbn_aug.recipe import RecipeData, deepaugment_data

    cfg = _toy(deepaugment={"nets": ["cae", "edsr"], "epochs": 1, "channels": 4, "batch_size": 16, "lr": 1e-3,
                            "strength": 1.0, "group_size": 4})
    data = RecipeData(cfg, None)
    x, y = deepaugment_data(cfg, data, tmp_path, torch.device("cpu"), progress=False)
    assert x.shape == (2 * 40, 32, 32, 3) and x.dtype == np.uint8
    assert np.array_equal(y, np.concatenate([data.train_y, data.train_y]))
    assert not np.array_equal(x[:40], data.train_x)  # perturbed copies, not the clean images
    folders = list(tmp_path.glob("deepaugment-*"))
    assert len(folders) == 1 and {p.name for p in folders[0].iterdir()} == {"cae.pt", "cae.npz", "edsr.pt",
                                                                          "edsr.npz"}

    def boom(*a, **k):
        raise AssertionError("DeepAugment data was regenerated")

    monkeypatch.setattr(image, "train_deepaugment_net", boom)
    x2, _ = deepaugment_data(cfg, data, tmp_path, torch.device("cpu"), progress=False)
    assert np.array_equal(x, x2)


def test_aggregate_two_seeds_mean_std(toy_run, tmp_path):
    from advbn_aug.recipe import aggregate

    cfg, root, _ = toy_run
    r = json.loads((root / "runs" / "standard" / "seed0" / "result.json").read_text())
    r1 = dict(r, seed=1, sha256="0" * 64, mca=r["mca"] + 0.02)
    doc = aggregate([r, r1], cfg, tmp_path, ["standard", "standard"])
    row = doc["arms"]["standard"]
    assert row["seeds"] == [0, 1] and row["mca"]["n"] == 2
    assert row["mca"]["mean"] == pytest.approx(r["mca"] + 0.01)
    assert row["mca"]["std"] == pytest.approx(0.02 / 2 ** 0.5)
    assert (tmp_path / "sha256.txt").read_text().count("\n") == 2
    assert " ± " in (tmp_path / "results.md").read_text()


def test_collect_only_runs_nothing(toy_run, tmp_path, monkeypatch):
    import advbn_aug.recipe as recipe

    cfg, root, doc = toy_run

    def boom(*a, **k):
        raise AssertionError("--collect must not load data or train")

    monkeypatch.setattr(recipe, "RecipeData", boom)
    doc2 = recipe.run_recipe(cfg, output=tmp_path / "o", runs_dir=root / "runs", collect_only=True)
    assert list(doc2["arms"]) == list(doc["arms"]) and (tmp_path / "o" / "results.md").is_file()


def test_hypotheses_pair_arms_by_seed(toy_run, tmp_path):
    from advbn_aug.recipe import aggregate

    cfg, root, _ = toy_run
    std = json.loads((root / "runs" / "standard" / "seed0" / "result.json").read_text())
    adv = json.loads((root / "runs" / "advbn" / "seed0" / "result.json").read_text())
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


def test_confidence_interval_matches_the_t_formula_and_says_when_it_excludes_zero():
    from advbn_aug.recipe import _interval_text, _stat, confidence_interval

    st = _stat([0.010, 0.012, 0.008, 0.011, 0.009])  # mean 0.01, sd 0.00158, n 5; t(0.975, 4) = 2.776
    lo, hi = confidence_interval(st)
    assert lo == pytest.approx(0.01 - 2.7764 * 0.0015811 / 5 ** 0.5, abs=1e-6)
    assert hi == pytest.approx(0.01 + 2.7764 * 0.0015811 / 5 ** 0.5, abs=1e-6)
    assert "excludes 0" in _interval_text("d", st)
    assert confidence_interval(_stat([0.5])) is None and "one seed" in _interval_text("d", _stat([0.5]))


def test_table_lists_missing_runs_and_the_commit_of_each_arm(toy_run, tmp_path):
    from advbn_aug.recipe import aggregate
    from advbn_aug.recipe_config import DEFAULT_ARMS

    cfg, root, _ = toy_run
    std = json.loads((root / "runs" / "standard" / "seed0" / "result.json").read_text())
    assert std["code"]["commit"] is None or len(std["code"]["commit"]) == 40
    runs = [dict(std, code={"commit": "a" * 40, "dirty": True}), dict(std, seed=1, code=None)]
    jobs = [(DEFAULT_ARMS["standard"], 0), (DEFAULT_ARMS["standard"], 1), (DEFAULT_ARMS["advbn"], 0)]
    doc = aggregate(runs, cfg, tmp_path, ["standard", "advbn"], jobs=jobs)
    assert doc["missing"] == ["advbn/seed0"] and doc["arms"]["standard"]["code"] == ["aaaaaaa+dirty", "unrecorded"]
    md = (tmp_path / "results.md").read_text()
    assert "Runs still missing (1): advbn/seed0." in md and "aaaaaaa+dirty, unrecorded" in md


def test_every_arm_freezes_the_prefix_up_to_the_advbn_layer(tmp_path):
    from advbn_aug.cifar_resnet import cifar_resnet
    from advbn_aug.recipe import run_recipe

    cfg = _toy(arms=["standard"], advbn={"layer": "layer2", "eps": 1.1, "step_size": 0.2, "steps": 2})
    doc = run_recipe(cfg, output=tmp_path / "results", runs_dir=tmp_path / "runs", progress=False,
                     cache_dir=str(tmp_path / "cache"))
    r = doc["runs"][0]
    model = cifar_resnet(20)
    expected = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("layer3", "linear")))
    assert r["arm"]["name"] == "standard" and r["trainable_parameters"] == expected


def test_tiny_run_writes_only_untracked_folders():
    """The README's first command (`advbn-aug recipe cifar10 --tiny`) must leave `git status` clean (issue 15)."""
    import subprocess
    from pathlib import Path

    from advbn_aug.recipe import default_folders

    repo = Path(__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in default_folders(tiny=True):
        probe = folder / "results.md"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=repo).returncode == 0
        assert ignored, f"{probe} is not ignored by git: --tiny would modify or add tracked files"


def test_committed_result_copies_rebuild_the_table_and_skip_the_run(toy_run, tmp_path, monkeypatch):
    """Issue 15 item 6: each finished run's result.json is copied under <output>/runs/ (committed), so a fresh
    machine without the runs folder rebuilds the table and does not redo the run."""
    import shutil

    import advbn_aug.recipe as recipe

    cfg, root, doc = toy_run
    archive = root / "results" / "runs"
    for arm in ("pretrained", "standard", "advbn"):
        copy = json.loads((archive / arm / "seed0" / "result.json").read_text())
        assert copy == json.loads((root / "runs" / arm / "seed0" / "result.json").read_text())
    out = tmp_path / "o"
    shutil.copytree(archive, out / "runs")

    def boom(*a, **k):
        raise AssertionError("archived runs must not be trained again")

    monkeypatch.setattr(recipe, "_train", boom)
    doc2 = recipe.run_recipe(cfg, output=out, runs_dir=tmp_path / "empty-runs", progress=False,
                             cache_dir=str(root / "cache"))
    assert list(doc2["arms"]) == list(doc["arms"]) and doc2["missing"] == []
    assert not (tmp_path / "empty-runs" / "standard" / "seed0" / "model.pt").exists()


def test_mixstyle_and_dsu_arms_train_differently_from_standard(tmp_path):
    """Issue 11: MixStyle/DSU arms run through the same machinery; their augmentation fires although the recipe's
    prefix (up to layer1, where both sit) is frozen in eval mode."""
    from advbn_aug.recipe import run_recipe

    cfg = _toy(arms=["standard", "mixstyle", "dsu"], corruptions=["contrast"])
    doc = run_recipe(cfg, output=tmp_path / "o", runs_dir=tmp_path / "r", progress=False,
                     cache_dir=str(tmp_path / "cache"))
    shas = {a: row["sha256"]["seed0"] for a, row in doc["arms"].items()}
    assert len(set(shas.values())) == 3, shas
    assert {"mixstyle_vs_standard", "dsu_vs_standard"} <= set(doc["hypotheses"])


def test_arm_features_are_validated():
    from advbn_aug.recipe_config import ArmConfig

    with pytest.raises(ValueError, match="type one of"):
        ArmConfig("x", features=[{"type": "advbn", "layer": "layer1"}])
    with pytest.raises(ValueError, match="p must be a probability"):
        ArmConfig("x", features=[{"type": "mixstyle", "layer": "layer1", "p": 2}])
    assert "features" not in ArmConfig("x").to_dict()  # runs stored before the field existed still match
