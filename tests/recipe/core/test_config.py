"""The shared training fields (advbn_aug.recipe.core.config.TrainConfig): both benchmark configs follow them, and the
``advbn-aug recipe`` training flags derived from them override only what is given."""

from __future__ import annotations

import argparse
import dataclasses
from typing import get_type_hints

import pytest


@pytest.mark.parametrize("module, name", [("advbn_aug.recipe.cifar10.config", "RecipeConfig"),
                                          ("advbn_aug.recipe.pacs.config", "PACSConfig")])
def test_every_benchmark_config_declares_the_shared_fields_with_their_types(module, name):
    import importlib

    from advbn_aug.recipe.core.config import TrainConfig

    cls = getattr(importlib.import_module(module), name)
    shared, own = get_type_hints(TrainConfig), get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for field_name, annotation in shared.items():
        assert field_name in fields, f"{name} lacks the shared field {field_name}"
        assert own[field_name] == annotation, (field_name, own[field_name], annotation)


def _parser() -> argparse.ArgumentParser:
    from advbn_aug.recipe.core.config import add_train_arguments

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser


def test_training_flags_override_only_what_is_given():
    from advbn_aug.recipe.core.config import train_overrides

    parser = _parser()
    args = parser.parse_args([])
    assert args.steps is None and args.batch_size is None and args.extras is None  # as the hand-written flags had
    assert train_overrides(args) == {}
    args = parser.parse_args(["--steps", "7", "-b", "16", "--lr", "0.05", "--seeds", "3", "1", "--arms", "advbn",
                              "--train-subset", "96", "--decay-at", "0.25", "--extras", "none"])
    assert train_overrides(args) == {"steps": 7, "batch_size": 16, "lr": 0.05, "seeds": [3, 1], "arms": ["advbn"],
                                     "train_subset": 96, "decay_at": 0.25, "extras": []}
    assert train_overrides(parser.parse_args(["--batch-size", "4", "--extras", "tta"])) == {"batch_size": 4,
                                                                                            "extras": ["tta"]}


@pytest.mark.parametrize("flags", [["--steps", "two"], ["--train-subset", "none"], ["--seeds"], ["--model", "x"]])
def test_training_flags_reject_bad_values_and_have_no_model_flag(flags, capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(flags)


def test_both_recipes_read_the_training_flags():
    from advbn_aug.cli.recipe import add_arguments, config_from_args
    from advbn_aug.recipe.cifar10.config import FULL
    from advbn_aug.recipe.pacs.config import PACS_FULL

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = ["--steps", "5", "-b", "8", "--momentum", "0.5", "--checkpoint-interval", "2", "--extras", "none"]
    for benchmark, base in (("cifar10", FULL), ("pacs", PACS_FULL)):
        cfg = config_from_args(parser.parse_args([benchmark, *flags]))
        assert type(cfg) is type(base)
        assert (cfg.steps, cfg.batch_size, cfg.momentum, cfg.checkpoint_interval, cfg.extras) == (5, 8, 0.5, 2, [])
        assert cfg.lr == base.lr and cfg.seeds == base.seeds  # not given: the preset's
