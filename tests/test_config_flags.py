"""config_cli: command-line flags derived from config dataclasses (AdvBNConfig, test configs, the recipe's flags)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from advbn_aug.config import (
    UNSET,
    ConfigArgumentError,
    add_config_arguments,
    config_from_args,
    config_values,
    flag_name,
)
from advbn_aug.feature.config import AdvBNConfig


def _parser(cls: type = AdvBNConfig, **kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="test", exit_on_error=True)
    add_config_arguments(p, cls, **kw)
    return p


def _parse(argv: list[str], cls: type = AdvBNConfig, **kw):
    return config_from_args(_parser(cls, **kw).parse_args(argv), cls, prefix=kw.get("prefix", "advbn-"))


def test_every_advbn_config_field_has_help_and_a_flag():
    """Each AdvBNConfig field is documented and reaches the CLI (new fields included, without code changes)."""
    parser = _parser()
    text = parser.format_help()
    args = parser.parse_args([])
    assert set(config_values(args, AdvBNConfig)) == {f.name for f in dataclasses.fields(AdvBNConfig)}
    for f in dataclasses.fields(AdvBNConfig):
        assert f.metadata.get("help"), f"AdvBNConfig.{f.name} has no metadata['help']"
        assert flag_name(f.name) in text
    assert config_from_args(args, AdvBNConfig) == AdvBNConfig()  # no flags: the defaults


def test_round_trip_of_each_type():
    cfg = _parse(["--advbn-layer", "stages.0", "--advbn-eps", "0.5", "--advbn-step-size", "0.1", "--advbn-steps", "3",
                  "--advbn-clamp-min", "-1.5", "--advbn-split", "hook", "--advbn-capture", "copy"])
    assert cfg == AdvBNConfig(layer="stages.0", eps=0.5, step_size=0.1, steps=3, clamp_min=-1.5, split="hook",
                              capture="copy")
    assert isinstance(cfg.steps, int) and isinstance(cfg.eps, float)
    assert _parse(["--advbn-layer", "2"]).layer == 2  # an integer is a timm feature_info index
    assert _parse(["--advbn-eps", "1"]).eps == 1.0


@pytest.mark.parametrize("text, value", [("none", None), ("None", None), ("off", None), ("auto", "auto"),
                                         ("0", 0.0), ("0.25", 0.25)])
def test_optional_auto_float(text, value):
    cfg = _parse(["--advbn-clamp-min", text, "--advbn-token-clamp-min", text])
    assert cfg.clamp_min == value and cfg.token_clamp_min == value
    assert type(cfg.clamp_min) is type(value)


def test_bool_flags_and_their_negations():
    """The existing flag names --advbn-no-dual-bn / --advbn-no-freeze-prefix keep working."""
    assert _parse([]).dual_bn and _parse([]).freeze_prefix and not _parse([]).dual_ln
    cfg = _parse(["--advbn-no-dual-bn", "--advbn-no-freeze-prefix", "--advbn-dual-ln", "--advbn-no-check-finite"])
    assert (cfg.dual_bn, cfg.freeze_prefix, cfg.dual_ln, cfg.check_finite) == (False, False, True, False)
    assert _parse(["--advbn-no-dual-bn", "--advbn-dual-bn"]).dual_bn  # the last one wins
    assert "--advbn-dual-bn | --advbn-no-dual-bn" in _parser().format_usage()


@pytest.mark.parametrize("argv, message", [
    (["--advbn-steps", "two"], "argument --advbn-steps: invalid value 'two': expected an integer"),
    (["--advbn-eps", "big"], "argument --advbn-eps: invalid value 'big': expected a number"),
    (["--advbn-clamp-min", "relu"], "invalid value 'relu': expected a number, 'auto' or 'none'"),
    (["--advbn-split", "torch"], "argument --advbn-split: invalid choice: 'torch'"),
    (["--advbn-dual-bn", "no"], "unrecognized arguments: no"),
])
def test_bad_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_rejected_value_names_the_flag():
    with pytest.raises(ConfigArgumentError, match=r"^--advbn-eps -1.0: eps must be >= 0"):
        _parse(["--advbn-eps", "-1"])
    with pytest.raises(ValueError, match=r"^--advbn-step-size 0.0: step_size must be > 0.*steps=0"):
        _parse(["--advbn-step-size", "0", "--advbn-steps", "2"])


@dataclass
class _Toy:
    """A config with one field of each supported kind (a new field needs no CLI code)."""

    name: str = field(default="a", metadata={"help": "a name"})
    count: int = field(default=1, metadata={"help": "how many (100% of them)", "metavar": "N"})
    scale: float | None = field(default=None, metadata={"help": "a scale"})
    level: Literal[1, 2, 3] = field(default=1, metadata={"help": "a level"})
    mode: Literal["x", "y"] | int = field(default="x", metadata={"help": "a mode or a number"})
    sizes: list[int] = field(default_factory=lambda: [1, 2], metadata={"help": "sizes"})
    on: bool = field(default=False, metadata={"help": "switch"})
    extra: float = field(default=0.0)  # no help: still gets a flag

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if self.on and self.scale is None:
            raise ValueError("on needs a scale")


def test_new_fields_show_up_without_code_changes():
    parser = _parser(_Toy, prefix="toy-")
    text = parser.format_help()
    for flag in ("--toy-name", "--toy-count N", "--toy-scale", "--toy-level {1,2,3}", "--toy-mode", "--toy-sizes",
                 "--toy-on, --toy-no-on", "--toy-extra"):
        assert flag in text
    assert "how many (100% of them) (default: 1)" in " ".join(text.split())
    cfg = config_from_args(parser.parse_args(["--toy-name", "b", "--toy-count", "3", "--toy-scale", "off",
                                              "--toy-level", "2", "--toy-mode", "7", "--toy-sizes", "4", "5",
                                              "--toy-extra", "2"]), _Toy, prefix="toy-")
    assert cfg == _Toy(name="b", count=3, scale=None, level=2, mode=7, sizes=[4, 5], extra=2.0)
    assert config_from_args(parser.parse_args(["--toy-mode", "y"]), _Toy, prefix="toy-").mode == "y"
    with pytest.raises(ConfigArgumentError, match=r"^--toy-count -1: count must be >= 0"):
        config_from_args(parser.parse_args(["--toy-count", "-1"]), _Toy, prefix="toy-")
    with pytest.raises(ConfigArgumentError, match=r"^--toy-on True: on needs a scale"):  # no single culprit
        config_from_args(parser.parse_args(["--toy-on"]), _Toy, prefix="toy-")


def test_unset_defaults_keep_only_the_given_flags():
    """defaults='unset': the namespace holds exactly what the user passed; the rest comes from ``base``."""
    parser = _parser(defaults=UNSET, exclude=("freeze_prefix",))
    assert "--advbn-freeze-prefix" not in parser.format_help()
    args = parser.parse_args(["--advbn-eps", "0.5", "--advbn-clamp-min", "none", "--advbn-no-dual-bn"])
    assert config_values(args, AdvBNConfig) == {"eps": 0.5, "clamp_min": None, "dual_bn": False}
    base = AdvBNConfig(layer="layer2", steps=2)
    assert config_from_args(args, AdvBNConfig, base=base) == AdvBNConfig(layer="layer2", steps=2, eps=0.5,
                                                                         clamp_min=None, dual_bn=False)
    assert config_values(parser.parse_args([]), AdvBNConfig) == {}


def test_default_overrides_and_bad_arguments():
    parser = _parser(defaults={"layer": "layer3", "steps": 2})
    assert "(default: layer3)" in parser.format_help()
    assert config_from_args(parser.parse_args([]), AdvBNConfig) == AdvBNConfig(layer="layer3", steps=2)
    with pytest.raises(ValueError, match=r"defaults names unknown AdvBNConfig fields \['stepz'\]"):
        _parser(defaults={"stepz": 2})
    with pytest.raises(ValueError, match=r"exclude names unknown AdvBNConfig fields \['lr'\]"):
        _parser(exclude=("lr",))
    with pytest.raises(ValueError, match="defaults must be None, a mapping of field defaults or 'unset'"):
        _parser(defaults="none")

    @dataclass
    class Odd:
        pair: tuple[int, str] = (1, "a")

    with pytest.raises(TypeError, match=r"config field 'pair'.*metadata\['parse'\].*exclude="):
        _parser(Odd)
    assert "--advbn-pair" not in _parser(Odd, exclude=("pair",)).format_help()


def test_recipe_flags_are_derived_and_only_given_ones_override(capsys):
    """advbn-aug recipe: every AdvBN option but freeze_prefix (always on there) has a flag; only the flags given go
    into the recipe's advbn dict; a bad value is a usage error naming the flag."""
    from advbn_aug.cli import main
    from advbn_aug.cli.recipe import add_arguments, config_from_args
    from advbn_aug.recipe.cifar10.config import TINY

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["cifar10", "--tiny", "--advbn-layer", "layer2", "--advbn-steps", "2",
                              "--advbn-no-dual-bn", "--advbn-clamp-min", "none"])
    cfg = config_from_args(args)
    assert cfg.advbn == {**TINY.advbn, "layer": "layer2", "steps": 2, "dual_bn": False, "clamp_min": None}
    assert config_from_args(parser.parse_args(["cifar10", "--tiny"])).advbn == TINY.advbn
    assert "--advbn-freeze-prefix" not in parser.format_help() and "--advbn-token-clamp-min" in parser.format_help()
    with pytest.raises(SystemExit) as e:
        main(["recipe", "cifar10", "--tiny", "--advbn-eps", "-1"])
    assert e.value.code == 2
    assert "advbn-aug recipe: error: --advbn-eps -1.0: eps must be >= 0" in capsys.readouterr().err
