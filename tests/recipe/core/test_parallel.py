"""The GPU table's command (issue 26 item 5): ``advbn-aug recipe cifar10 --preset gpu`` runs the full recipe's main
arms with several worker processes sharing one runs folder, in folders of its own, recording the device; a table
never mixes devices. Its tiny version runs here on CPU."""

from __future__ import annotations

import json

import pytest

from ..._recipe_toy import needs_data

# the GPU preset at toy scale: two steps on 40 images, one corruption set, 32 clean test images
_TOY = ["--steps", "2", "-b", "8", "--train-subset", "40", "--checkpoint-interval", "1", "--eval-images", "16",
        "--corruptions", "gaussian_noise", "--severities", "3", "--clean-test-images", "32", "--lossless-images", "16",
        "--eval-batch-size", "32",
        "--device", "cpu", "--no-progress"]


def test_gpu_preset_is_the_full_recipe_in_folders_of_its_own():
    from advbn_aug.cli.recipe import default_folders
    from advbn_aug.recipe.cifar10.config import FULL, GPU

    assert GPU.train_key() == FULL.train_key() and GPU.eval_key() == FULL.eval_key()
    assert GPU.arms == ["standard", "advbn", "augmix", "augmix_advbn", "dsu", "mixstyle"] and len(GPU.seeds) == 10
    out, runs = default_folders(False, "gpu")
    assert out.as_posix() == "recipes/cifar10/results_gpu" and runs.as_posix() == "runs/cifar10-gpu"
    assert (out, runs) != default_folders(False, "full")


def _fake_result(runs, cfg, arm, seed, **device):
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS
    from advbn_aug.recipe.core.config import digest

    path = runs / arm / f"seed{seed}" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"arm": DEFAULT_ARMS[arm].to_dict(), "seed": seed, "train_key": digest(cfg.train_key()),
                                "eval_key": digest(cfg.eval_key()), **device}))


def test_collect_refuses_to_mix_cpu_and_gpu_runs(tmp_path):
    """A CPU result (recorded, or from before devices were recorded) and a CUDA result in one runs folder: --collect
    refuses to write their table, and writes nothing."""
    from advbn_aug.recipe.cifar10.config import GPU
    from advbn_aug.recipe.core.runner import run_recipe

    cfg = GPU.with_overrides(arms=["standard"], seeds=[0, 1])
    _fake_result(tmp_path / "runs", cfg, "standard", 0)  # a CPU table's run: no device recorded
    _fake_result(tmp_path / "runs", cfg, "standard", 1, device="cuda", device_name="NVIDIA H100 80GB HBM3")
    with pytest.raises(ValueError, match="made on cpu/cuda: a table never mixes devices.*--output and --runs-dir"):
        run_recipe(cfg, output=tmp_path / "o", runs_dir=tmp_path / "runs", collect_only=True)
    assert not (tmp_path / "o").exists()


@needs_data
def test_running_on_another_device_than_the_finished_runs_is_refused(tmp_path):
    """A CPU command pointed at a folder of GPU results is refused before it writes anything (log, config, run)."""
    from advbn_aug.cli import main
    from advbn_aug.recipe.cifar10.config import GPU

    cfg = GPU.with_overrides(arms=["standard"], seeds=[0], steps=2, batch_size=8, train_subset=40,
                             checkpoint_interval=1, eval_images=16, corruptions=["gaussian_noise"], severities=[3],
                             clean_test_images=32, lossless_images=16, eval_batch_size=32)
    _fake_result(tmp_path / "runs", cfg, "standard", 0, device="cuda", device_name="NVIDIA H100 80GB HBM3")
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="made on cuda and this command runs on cpu"):
        main(["recipe", "cifar10", "--preset", "gpu", "--workers", "1", "--arms", "standard", "--seeds", "0", *_TOY,
              "--output", str(tmp_path / "o"), "--runs-dir", str(tmp_path / "runs")])
    assert sorted(p for p in tmp_path.rglob("*")) == before


@needs_data
def test_gpu_command_tiny_on_cpu_two_workers_share_the_runs(tmp_path, capfd):
    """The same command at toy scale with 2 workers, 2 arms, 2 seeds: the corruption set is made once (by the parent,
    before the workers), each run is trained once, every result and the table record the device, and the table lands
    in the given output folder."""
    from advbn_aug.cli import main

    out, runs, cache = tmp_path / "o", tmp_path / "runs", tmp_path / "cache"
    assert main(["recipe", "cifar10", "--preset", "gpu", "--workers", "2", "--arms", "standard", "mixstyle",
                 "--seeds", "0", "1", *_TOY, "--output", str(out), "--runs-dir", str(runs),
                 "--cache-dir", str(cache)]) == 0
    err = capfd.readouterr().err
    assert "corruption cache: 1 of 1 sets generated" in err and "[worker 0]" in err and "[worker 1]" in err, err
    assert len(list(cache.glob("*.npy"))) == 1
    for arm in ("standard", "mixstyle"):
        for seed in (0, 1):
            assert err.count(f"train {arm} seed {seed}:") == 1, err  # trained by exactly one worker
            r = json.loads((runs / arm / f"seed{seed}" / "result.json").read_text())
            assert r["device"] == "cpu" and r["device_name"] == "cpu"
            ev = json.loads((runs / arm / f"seed{seed}" / "eval" / "results.json").read_text())
            assert ev["cache_hits"] == 1  # the set the parent made
            assert (out / "runs" / arm / f"seed{seed}" / "result.json").is_file()
    doc = json.loads((out / "results.json").read_text())
    assert doc["devices"] == {"cpu": 4} and set(doc["arms"]) == {"standard", "mixstyle"} and not doc["missing"]
    assert "Trained on: cpu (4 runs)." in (out / "results.md").read_text()
    assert len((out / "logs" / "commands.log").read_text().splitlines()) == 1
