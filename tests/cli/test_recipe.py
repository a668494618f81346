"""The ``advbn-aug recipe`` command (advbn_aug.cli.recipe): usage errors and the default folders."""

from __future__ import annotations

import pytest

from .._recipe_toy import needs_data


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


def test_tiny_run_writes_only_untracked_folders():
    """The README's first command (`advbn-aug recipe cifar10 --tiny`) must leave `git status` clean (issue 15)."""
    import subprocess
    from pathlib import Path

    from advbn_aug.cli.recipe import default_folders

    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in default_folders(tiny=True):
        probe = folder / "results.md"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=repo).returncode == 0
        assert ignored, f"{probe} is not ignored by git: --tiny would modify or add tracked files"


def test_presets_and_extras_flags():
    import argparse

    from advbn_aug.cli.recipe import add_arguments, config_from_args, default_folders
    from advbn_aug.recipe.cifar10.config import FULL, SHORT

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(["cifar10"]))
    assert cfg == FULL and cfg.lr == 0.001 and cfg.steps == 782 and cfg.train_subset is None and len(cfg.seeds) == 5
    assert config_from_args(parser.parse_args(["cifar10", "--preset", "short"])) == SHORT
    assert config_from_args(parser.parse_args(["cifar10", "--extras", "none"])).extras == []
    assert config_from_args(parser.parse_args(["cifar10", "--extras", "tta", "--tta-images", "64"])).tta_images == 64
    assert default_folders(False, "short")[0].as_posix() == "recipes/cifar10/results/short"
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        config_from_args(parser.parse_args(["cifar10", "--extras", "imagenet"]))


@pytest.mark.parametrize("flags", [["cifar10", "--tiny", "--arms", "nosuch"],
                                   ["cifar10", "--tiny", "--arms", "standard", "--arms-dir", "{tmp}/no-arms"],
                                   ["cifar10", "--tiny", "--arms", "standard", "--data-dir", "{tmp}/empty"],
                                   ["cifar10", "--tiny", "--arms", "standard", "--collect", "--arms-dir",
                                    "{tmp}/no-arms"],
                                   ["pacs", "--tiny", "--arms", "nosuch"]])
def test_rejected_command_writes_no_log_and_no_config(tmp_path, flags):
    """Issue 22 item 12: a command that the recipe rejects (unknown arm, missing arms folder or data) is neither
    appended to logs/commands.log nor written to config.yaml: everything is checked before anything is written."""
    from advbn_aug.cli import main

    (tmp_path / "empty").mkdir()
    argv = ["recipe", *(f.format(tmp=tmp_path) for f in flags), "--runs-dir", str(tmp_path / "r"), "--no-progress"]
    fresh = tmp_path / "fresh"
    with pytest.raises((ValueError, FileNotFoundError), match="unknown arm|does not exist|not found"):
        main([*argv, "--output", str(fresh)])
    assert not fresh.exists()  # not even logs/recipe.log
    used = tmp_path / "used"  # an output folder of earlier runs: its history and config stay as they were
    (used / "logs").mkdir(parents=True)
    (used / "logs" / "commands.log").write_text("2025-01-01T00:00:00 cwd=/x advbn-aug recipe cifar10 --tiny\n")
    (used / "config.yaml").write_text("steps: 3\n")
    before = {p: p.read_bytes() for p in used.rglob("*") if p.is_file()}
    with pytest.raises((ValueError, FileNotFoundError), match="unknown arm|does not exist|not found"):
        main([*argv, "--output", str(used)])
    assert {p: p.read_bytes() for p in used.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "r").exists()


@needs_data
def test_corrupt_resume_checkpoint_exits_2_naming_the_file(tmp_path, capsys):
    """Issue 22 item 12: `advbn-aug recipe` on a run folder with a truncated ckpt.pt prints an error naming the file
    and the remedy (delete it) and exits 2, instead of a zip RuntimeError traceback; the checkpoint is kept."""
    import torch

    from advbn_aug.cli import main

    ckpt = tmp_path / "runs" / "standard" / "seed0" / "ckpt.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.arange(4096.0)}, "step": 1}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert main(["recipe", "cifar10", "--tiny", "--arms", "standard", "--seeds", "0", "--extras", "none",
                 "--device", "cpu", "--no-progress", "--output", str(tmp_path / "o"),
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"advbn-aug recipe: error: resume checkpoint {ckpt} is truncated" in err, err
    assert "delete it to restart this run from step 0" in err and "Traceback" not in err
    assert ckpt.is_file() and not (ckpt.parent / "model.pt").exists()


@needs_data
def test_recipe_lines_are_printed_once_whatever_root_logging_holds(tmp_path, capsys):
    """A root handler set up earlier (timm's setup_default_logging in the same process, logging.basicConfig) printed
    every recipe line a second time, or a 'Logging error' traceback once its stream was closed (CI: the
    corrupt-checkpoint test after the timm tests). The command prints through its own handler only."""
    import io
    import logging

    from advbn_aug.cli import main

    stale = io.StringIO()
    root_handler = logging.StreamHandler(stale)
    logging.getLogger().addHandler(root_handler)
    stale.close()  # a stream closed since, as pytest's capture streams are after their test
    try:
        ckpt = tmp_path / "runs" / "standard" / "seed0" / "ckpt.pt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"")
        assert main(["recipe", "cifar10", "--tiny", "--arms", "standard", "--seeds", "0", "--extras", "none",
                     "--device", "cpu", "--no-progress", "--output", str(tmp_path / "o"),
                     "--runs-dir", str(tmp_path / "runs")]) == 2
    finally:
        logging.getLogger().removeHandler(root_handler)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err, err
    assert err.count("data: 96 training images") == 1, err
    assert logging.getLogger("advbn_aug.recipe").propagate  # restored after the command


@needs_data
def test_tiny_table_says_it_is_a_smoke_test(tmp_path, capsys):
    """Issue 25: the --tiny table is followed by a line saying its numbers are a smoke test and where the committed
    tables are, so a newcomer does not read 3-step numbers as results."""
    from advbn_aug.cli import main

    assert main(["recipe", "cifar10", "--tiny", "--arms", "pretrained", "--extras", "none", "--device", "cpu",
                 "--no-progress", "--output", str(tmp_path / "o"), "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "pretrained" in out and "smoke test" in out and "recipes/cifar10/results/" in out, out
