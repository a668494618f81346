"""The CIFAR-10 recipe runner (advbn_aug.recipe.core.runner) end to end at toy scale: results files, exported
state_dicts, resuming, committed copies, bad input; and the committed runs still count as finished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ..._recipe_toy import needs_data, toy_config

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from advbn_aug.recipe import run_recipe

    root = tmp_path_factory.mktemp("recipe")
    cfg = toy_config()
    doc = run_recipe(cfg, output=root / "results", runs_dir=root / "runs", progress=False,
                     cache_dir=str(root / "cache"))
    return cfg, root, doc


@needs_data
def test_toy_run_writes_results_and_plain_state_dicts(toy_run):
    from advbn_aug.models.cifar_resnet import pretrained_keys
    from advbn_aug.recipe.core.train import sha256_file

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
        assert res["code"]["commit"] is None or len(res["code"]["commit"]) == 40  # the commit the run came from
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
    # AdvBN runs also export the adversarial-BatchNorm route: same keys, differing only in the suffix's BatchNorms
    adv_route = torch.load(root / "runs" / "advbn" / "seed0" / "model_adv.pt", weights_only=True)
    assert list(adv_route) == keys
    differ = {k for k in keys if not torch.equal(adv_route[k], adv[k])}
    assert differ and all(".bn" in k and not k.startswith("layer1") for k in differ), sorted(differ)[:4]
    assert not (root / "runs" / "standard" / "seed0" / "model_adv.pt").exists()


@needs_data
def test_resume_skips_finished_runs(toy_run, monkeypatch):
    import advbn_aug.recipe.core.runner as runner

    cfg, root, doc = toy_run

    def boom(*a, **k):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(runner, "train_arm", boom)
    monkeypatch.setattr(runner, "_evaluate", boom)
    doc2 = runner.run_recipe(cfg, output=root / "results", runs_dir=root / "runs", progress=False,
                             cache_dir=str(root / "cache"))
    assert doc2["arms"]["advbn"]["mca"] == doc["arms"]["advbn"]["mca"]


@needs_data
def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch):
    import advbn_aug.recipe.cifar10.model as model
    from advbn_aug.recipe import run_recipe

    cfg = toy_config(arms=["advbn"], steps=3, checkpoint_interval=1, corruptions=["contrast"])
    ref = run_recipe(cfg, output=tmp_path / "a", runs_dir=tmp_path / "ra", progress=False,
                     cache_dir=str(tmp_path / "cache"))
    real, calls = model.random_crop_flip, {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated stop at step 3")
        return real(x)

    monkeypatch.setattr(model, "random_crop_flip", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(cfg, output=tmp_path / "b", runs_dir=tmp_path / "rb", progress=False,
                   cache_dir=str(tmp_path / "cache"))
    ck = torch.load(tmp_path / "rb" / "advbn" / "seed0" / "ckpt.pt", weights_only=False)
    assert ck["step"] == 2
    assert not (tmp_path / "rb" / "advbn" / "seed0" / "run.lock").exists()
    monkeypatch.setattr(model, "random_crop_flip", real)
    out = run_recipe(cfg, output=tmp_path / "b", runs_dir=tmp_path / "rb", progress=False,
                     cache_dir=str(tmp_path / "cache"))
    a = torch.load(tmp_path / "ra" / "advbn" / "seed0" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "rb" / "advbn" / "seed0" / "model.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert out["arms"]["advbn"]["seeds"] == ref["arms"]["advbn"]["seeds"]


@needs_data
def test_unknown_arm_and_missing_data(tmp_path):
    from advbn_aug.recipe import RecipeConfig, run_recipe

    with pytest.raises(ValueError, match="unknown arm"):
        run_recipe(toy_config(arms=["standard", "nope"]), output=tmp_path / "o", runs_dir=tmp_path / "r")
    with pytest.raises(FileNotFoundError):
        run_recipe(toy_config(arms=["standard"]), output=tmp_path / "o", runs_dir=tmp_path / "r",
                   data_dir=tmp_path / "no_such_folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError):
        run_recipe(toy_config(arms=["standard"]), output=tmp_path / "o", runs_dir=tmp_path / "r", data_dir=empty)
    with pytest.raises(ValueError):
        RecipeConfig(model="resnet18")
    with pytest.raises(ValueError):
        RecipeConfig(steps=0)
    with pytest.raises(ValueError, match="unknown RecipeConfig keys"):
        RecipeConfig.from_dict({"stepz": 3})


@needs_data
def test_collect_only_runs_nothing(toy_run, tmp_path, monkeypatch):
    import advbn_aug.recipe.core.runner as runner
    from advbn_aug.recipe.cifar10.data import RecipeData

    cfg, root, doc = toy_run

    def boom(*a, **k):
        raise AssertionError("--collect must not load data or train")

    monkeypatch.setattr(RecipeData, "__init__", boom)
    monkeypatch.setattr(runner, "train_arm", boom)
    doc2 = runner.run_recipe(cfg, output=tmp_path / "o", runs_dir=root / "runs", collect_only=True)
    assert list(doc2["arms"]) == list(doc["arms"]) and (tmp_path / "o" / "results.md").is_file()


@needs_data
def test_every_arm_freezes_the_prefix_up_to_the_advbn_layer(tmp_path):
    from advbn_aug.models.cifar_resnet import cifar_resnet
    from advbn_aug.recipe import run_recipe

    cfg = toy_config(arms=["standard"], advbn={"layer": "layer2", "eps": 1.1, "step_size": 0.2, "steps": 2})
    doc = run_recipe(cfg, output=tmp_path / "results", runs_dir=tmp_path / "runs", progress=False,
                     cache_dir=str(tmp_path / "cache"))
    r = doc["runs"][0]
    model = cifar_resnet(20)
    expected = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("layer3", "linear")))
    assert r["arm"]["name"] == "standard" and r["trainable_parameters"] == expected


@needs_data
def test_committed_result_copies_rebuild_the_table_and_skip_the_run(toy_run, tmp_path, monkeypatch):
    """Issue 15 item 6: each finished run's result.json is copied under <output>/runs/ (committed), so a fresh
    machine without the runs folder rebuilds the table and does not redo the run."""
    import shutil

    import advbn_aug.recipe.core.runner as runner

    cfg, root, doc = toy_run
    archive = root / "results" / "runs"
    for arm in ("pretrained", "standard", "advbn"):
        copy = json.loads((archive / arm / "seed0" / "result.json").read_text())
        assert copy == json.loads((root / "runs" / arm / "seed0" / "result.json").read_text())
    out = tmp_path / "o"
    shutil.copytree(archive, out / "runs")

    def boom(*a, **k):
        raise AssertionError("archived runs must not be trained again")

    monkeypatch.setattr(runner, "train_arm", boom)
    doc2 = runner.run_recipe(cfg, output=out, runs_dir=tmp_path / "empty-runs", progress=False,
                             cache_dir=str(root / "cache"))
    assert list(doc2["arms"]) == list(doc["arms"]) and doc2["missing"] == []
    assert not (tmp_path / "empty-runs" / "standard" / "seed0" / "model.pt").exists()


@needs_data
def test_mixstyle_and_dsu_arms_train_differently_from_standard(tmp_path):
    """Issue 11: MixStyle/DSU arms run through the same machinery; their augmentation fires although the recipe's
    prefix (up to layer1, where both sit) is frozen in eval mode."""
    from advbn_aug.recipe import run_recipe

    cfg = toy_config(arms=["standard", "mixstyle", "dsu"], corruptions=["contrast"])
    doc = run_recipe(cfg, output=tmp_path / "o", runs_dir=tmp_path / "r", progress=False,
                     cache_dir=str(tmp_path / "cache"))
    shas = {a: row["sha256"]["seed0"] for a, row in doc["arms"].items()}
    assert len(set(shas.values())) == 3, shas
    assert {"mixstyle_vs_standard", "dsu_vs_standard"} <= set(doc["hypotheses"])


def test_committed_short_runs_are_still_finished_runs_of_the_short_preset():
    """Issue 15 item 7: committed results are matched by digests of the settings and the arm (train_key, eval_key,
    ArmConfig.to_dict()); every committed result of the short preset must still count as a finished run, or a
    refactor that changed a digest would silently redo (or drop from the table) every run."""
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS, SHORT
    from advbn_aug.recipe.core.runner import _collect, _finished

    folder = REPO / "recipes" / "cifar10" / "results" / "short" / "runs"
    paths = sorted(folder.glob("*/seed*/result.json"))
    if not paths:
        pytest.skip("recipes/cifar10/results/short/runs not in this checkout")
    stale = [str(p.relative_to(folder)) for p in paths if _finished(p, SHORT, DEFAULT_ARMS[p.parts[-3]]) is None]
    assert not stale, f"committed short-preset runs no longer recognised as finished: {stale}"
    # and the runner collects them from the committed copies alone
    jobs = [(DEFAULT_ARMS[p.parts[-3]], int(p.parts[-2].removeprefix("seed"))) for p in paths]
    assert len(_collect(SHORT, jobs, REPO / "no-such-runs-folder", folder)) == len(paths)


@needs_data
def test_same_seed_gives_bit_identical_weights(tmp_path):
    """Issue 15: runs are deterministic on one machine (same seed, threads, torch build): the README says so."""
    import torch

    from advbn_aug.recipe import run_recipe

    cfg = toy_config(arms=["standard", "advbn", "mixstyle"], corruptions=["contrast"], eval_images=8,
                     clean_test_images=8, lossless_images=8)
    before = torch.are_deterministic_algorithms_enabled()
    docs = [run_recipe(cfg, output=tmp_path / f"o{i}", runs_dir=tmp_path / f"r{i}", progress=False,
                       cache_dir=str(tmp_path / "c")) for i in range(2)]
    assert torch.are_deterministic_algorithms_enabled() == before  # the setting is restored after training
    shas = [{a: row["sha256"]["seed0"] for a, row in d["arms"].items()} for d in docs]
    assert shas[0] == shas[1] and len(set(shas[0].values())) == 3
    meta = json.loads((tmp_path / "r0" / "advbn" / "seed0" / "train.json").read_text())
    assert meta["threads"] == torch.get_num_threads() and meta["torch"] == torch.__version__


def _damaged(path: Path, kind: str) -> Path:
    """Write a damaged torch file at ``path``: ``empty``, ``truncated`` (the first half of a valid file), ``random``
    bytes, or a valid torch file holding a list (``not_a_dict``)."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.arange(4096.0)}, "step": 1} if kind != "not_a_dict" else [1, 2], path)
    data = path.read_bytes()
    if kind != "not_a_dict":
        path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2],
                          "random": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()}[kind])
    return path


@needs_data
@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "not_a_dict"])
def test_corrupt_resume_checkpoint_is_refused_naming_the_file(tmp_path, kind):
    """Issue 22 item 12: a corrupt ckpt.pt in a run folder is an error naming it and saying to delete it (not a raw
    EOFError / zip RuntimeError, nor silently dropped with the training it holds); the file stays."""
    from advbn_aug.eval.checkpoint import CheckpointError
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS
    from advbn_aug.recipe.core.runner import run_arm

    ckpt = _damaged(tmp_path / "runs" / "standard" / "seed0" / "ckpt.pt", kind)
    before = ckpt.read_bytes()
    with pytest.raises(CheckpointError, match="delete it to restart this run from step 0") as err:
        run_arm(toy_config(arms=["standard"]), DEFAULT_ARMS["standard"], 0, None, tmp_path / "runs",
                device=torch.device("cpu"), progress=False)  # data is not reached: the checkpoint is read first
    problem = {"empty": "is empty", "truncated": "is truncated", "random": "is corrupt or not a PyTorch checkpoint",
               "not_a_dict": "holds a list"}[kind]
    assert str(err.value).startswith(f"resume checkpoint {ckpt} {problem}"), err.value
    assert ckpt.read_bytes() == before and not (ckpt.parent / "model.pt").exists()


@needs_data
@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "not_a_dict"])
def test_corrupt_model_file_of_a_run_folder_is_refused_naming_the_file(tmp_path, kind):
    """Issue 22 item 12: a corrupt exported model.pt of a trained run (train.json there, result.json not yet), or of
    a finished run that the runner reuses to add evaluation modes, is an error naming the file and the remedy."""
    from advbn_aug.eval.checkpoint import CheckpointError
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS
    from advbn_aug.recipe.core.config import digest
    from advbn_aug.recipe.core.runner import run_arm

    arm, cfg = DEFAULT_ARMS["standard"], toy_config(arms=["standard"], extras=["tta"])
    run_dir = tmp_path / "runs" / "standard" / "seed0"
    model = _damaged(run_dir / "model.pt", kind)
    keys = {"arm": arm.to_dict(), "seed": 0, "train_key": digest(cfg.train_key())}
    (run_dir / "train.json").write_text(json.dumps(keys))
    kw = dict(device=torch.device("cpu"), progress=False)
    with pytest.raises(CheckpointError, match="delete it to train this run again") as err:
        run_arm(cfg, arm, 0, None, tmp_path / "runs", **kw)  # trained, not evaluated: model.pt is loaded
    problem = {"empty": "is empty", "truncated": "is truncated", "random": "is corrupt or not a PyTorch checkpoint",
               "not_a_dict": "holds a list"}[kind]
    assert str(err.value).startswith(f"exported model {model} {problem}"), err.value
    (run_dir / "result.json").write_text(json.dumps({**keys, "eval_key": digest(cfg.eval_key())}))
    with pytest.raises(CheckpointError, match="without the evaluation modes it lacks \\(tta\\)") as err:
        run_arm(cfg, arm, 0, None, tmp_path / "runs", **kw)  # finished, but the tta mode is missing
    assert str(err.value).startswith(f"exported model {model} {problem}")
    assert "--arms standard --seeds 0 --force" in str(err.value)
