"""The ``advbn-aug recipe`` command (advbn_aug.recipe.command): usage errors and the default folders."""

from __future__ import annotations

import pytest


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

    from advbn_aug.recipe.command import default_folders

    repo = Path(__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in default_folders(tiny=True):
        probe = folder / "results.md"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=repo).returncode == 0
        assert ignored, f"{probe} is not ignored by git: --tiny would modify or add tracked files"


def test_presets_and_extras_flags():
    import argparse

    from advbn_aug.recipe.command import add_arguments, config_from_args, default_folders
    from advbn_aug.recipe.config import FULL, SHORT

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
