"""advbn_aug.recipe.pacs.command: the PACS flags of ``advbn-aug recipe pacs`` (presets, protocol, layer, EMA decay),
their errors, and the default folders (the tiny ones ignored by git)."""

from __future__ import annotations

import argparse

import pytest


def _parse(*argv):
    from advbn_aug.cli.recipe import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_cli_flags():
    from advbn_aug.config import ConfigArgumentError
    from advbn_aug.recipe.pacs.command import pacs_default_folders
    from advbn_aug.recipe.pacs.config import PACS_FULL, PACS_TINY

    assert _parse("pacs") == PACS_FULL
    assert _parse("pacs", "--tiny") == PACS_TINY
    lodo = _parse("pacs", "--protocol", "leave_one_out")
    assert lodo.domain == "sketch" and lodo.advbn == PACS_FULL.advbn
    assert pacs_default_folders(False, lodo)[0].as_posix() == "recipes/pacs/results/leave_one_out_sketch"
    assert pacs_default_folders(True, lodo)[1].as_posix() == "runs/pacs-tiny/leave_one_out_sketch/runs"
    layer = _parse("pacs", "--advbn-layer", "blocks.2", "--seeds", "0")
    assert layer.advbn == {**PACS_FULL.advbn, "layer": "blocks.2"} and layer.seeds == [0]
    with pytest.raises(ValueError, match="candidate layers"):
        _parse("pacs", "--advbn-layer", "layer1")
    with pytest.raises(ConfigArgumentError, match="CIFAR-10 recipe flag"):
        _parse("pacs", "--corruptions", "fog")
    with pytest.raises(ConfigArgumentError, match="presets"):
        _parse("pacs", "--preset", "short")
    with pytest.raises(ConfigArgumentError, match="PACS recipe"):
        _parse("cifar10", "--protocol", "leave_one_out")


def test_tiny_default_folders_are_ignored_by_git():
    import subprocess
    from pathlib import Path

    from advbn_aug.recipe.pacs.command import pacs_default_folders
    from advbn_aug.recipe.pacs.config import PACS_TINY

    repo = Path(__file__).resolve().parents[3]
    if not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    for folder in (*pacs_default_folders(True, PACS_TINY), pacs_default_folders(False, PACS_TINY)[1]):
        probe = folder / "results.md"
        assert subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=repo).returncode == 0, probe


def test_cli_leave_one_out_preset_and_ema_flag():
    from advbn_aug.config import ConfigArgumentError
    from advbn_aug.recipe.pacs.command import pacs_default_folders
    from advbn_aug.recipe.pacs.config import PACS_LOO_SKETCH, ema_decay_for

    cfg = _parse("pacs", "--preset", "leave_one_out_sketch")
    assert cfg == PACS_LOO_SKETCH
    assert pacs_default_folders(False, cfg)[0].as_posix() == "recipes/pacs/results/leave_one_out_sketch"
    assert _parse("pacs", "--preset", "leave_one_out_sketch", "--ema-decay", "none").ema_decay is None
    assert _parse("pacs", "--steps", "200", "--ema-decay", "auto").ema_decay == ema_decay_for(200)
    assert _parse("pacs", "--ema-decay", "0.95").ema_decay == 0.95
    for bad in ("1.5", "fast"):
        with pytest.raises(ConfigArgumentError, match="--ema-decay"):
            _parse("pacs", "--ema-decay", bad)
    with pytest.raises(ConfigArgumentError, match="preset of the PACS recipe"):
        _parse("cifar10", "--preset", "leave_one_out_sketch")
    with pytest.raises(ConfigArgumentError, match="PACS recipe"):
        _parse("cifar10", "--ema-decay", "0.9")
