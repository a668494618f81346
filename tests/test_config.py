"""DictConfig: YAML 1.1 number strings (``5e-2``, which PyYAML reads as a string) in float fields (issue 22, 11)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from advbn_aug.config import DictConfig
from advbn_aug.feature.config import AdvBNConfig
from advbn_aug.feature.dsu import DSUConfig
from advbn_aug.feature.mixstyle import MixStyleConfig
from advbn_aug.policy import Policy, PolicyConfig


@dataclass
class _Toy(DictConfig):
    rate: float = 0.1
    floor: float | None = None
    clamp: float | None | str = "auto"
    name: str = "x"
    layer: str | int = "layer1"
    count: int = 1
    scales: tuple[float, ...] = (1.0,)
    weights: list[float] | None = field(default=None)


def test_pyyaml_reads_exponents_without_a_dot_as_strings():
    """The premise: YAML 1.1 needs a dot in a float, so ``5e-2`` arrives as the string ``'5e-2'``."""
    assert yaml.safe_load("a: 5e-2\nb: 5.0e-2") == {"a": "5e-2", "b": 0.05}


def test_float_fields_parse_number_strings_from_yaml():
    cfg = AdvBNConfig.from_yaml("step_size: 5e-2\neps: 1e0\nadv_fraction: .5e0\nclamp_min: 1e-3\n")
    assert (cfg.step_size, cfg.eps, cfg.adv_fraction, cfg.clamp_min) == (0.05, 1.0, 0.5, 0.001)
    assert DSUConfig.from_yaml("eps: 1e-6").eps == 1e-6
    assert MixStyleConfig.from_yaml("eps: 1e-6\nalpha: 1E-1\np: 5e-1") == MixStyleConfig(eps=1e-6, alpha=0.1, p=0.5)
    assert PolicyConfig.from_yaml("adv_weight: 5e-1\nmean: [5e-1]\nstd: [2.5e-1]").adv_weight == 0.5
    policy = Policy(PolicyConfig.from_yaml("features: [{type: dsu, layer: layer1, eps: 1e-6}]"))
    assert policy.features[0][0].config.eps == 1e-6  # feature specs are parsed by their own config


def test_only_float_fields_and_only_numbers_are_converted():
    cfg = _Toy.from_dict({"rate": "-2.5E+3", "floor": "1e-3", "clamp": "auto", "name": "1e3", "layer": "1",
                          "count": 2, "scales": ["1e-1", 2], "weights": ["3e0"]})
    assert cfg == _Toy(rate=-2500.0, floor=0.001, clamp="auto", name="1e3", layer="1", count=2, scales=[0.1, 2],
                       weights=[3.0])
    assert _Toy.from_dict({"clamp": "1e-2"}).clamp == 0.01
    assert _Toy.from_dict({"clamp": "none"}).clamp == "none"  # a str field: left for __post_init__ to judge
    assert _Toy.from_dict({"rate": 1}).rate == 1 and _Toy.from_dict({"floor": None}).floor is None


@pytest.mark.parametrize("text, field_name", [("step_size: fast", "step_size"), ("eps: 1e-6x", "eps"),
                                              ("clamp_min: none", "clamp_min")])
def test_a_non_number_in_a_float_field_names_the_field(text, field_name):
    """Before: ``TypeError: '>' not supported between 'str' and 'int'`` from deep inside ``__post_init__``."""
    with pytest.raises(ValueError, match=f"{field_name}.*number") as info:
        AdvBNConfig.from_yaml(text)
    assert "5.0e-2" in str(info.value)  # names the YAML fix


def test_dsu_eps_in_yaml_is_accepted():
    """Before: ``eps must be > 0, got '1e-6'`` although 1e-6 > 0."""
    from advbn_aug.feature.dsu import DSU

    assert DSU.from_config(yaml.safe_load("layer: layer2\neps: 1e-6")).config.eps == 1e-6
