"""feature.config: AdvBNConfig's checks (each names its field), AdvBN's keywords derived from its fields, the
YAML/dict round trip."""

import inspect
from dataclasses import fields

import pytest

from advbn_aug import AdvBN, AdvBNConfig


def test_every_config_field_is_an_advbn_keyword():
    params = inspect.signature(AdvBN).parameters
    for f in fields(AdvBNConfig):
        assert f.name in params and params[f.name].default == f.default, f.name
        assert f.metadata.get("help"), f"{f.name} has no help text"
    adv = AdvBN("layer2", capture="copy", dual_ln=True, check_finite=False, token_clamp_min=0.0)
    assert adv.config == AdvBNConfig(layer="layer2", capture="copy", dual_ln=True, check_finite=False,
                                     token_clamp_min=0.0)
    with pytest.raises(TypeError, match=r"unknown AdvBN option\(s\) \['epsilon'\].*'eps'"):
        AdvBN("layer1", epsilon=1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(clamp_min="always"), "clamp_min must be 'auto', a number or None"),
    (dict(capture="deep"), "capture must be 'check' or 'copy'"),
])
def test_bad_new_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdvBN("layer1", **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps=-0.1), "eps must be >= 0"),
    (dict(steps=-1), "steps must be an integer >= 0"),
    (dict(steps=1.5), "steps must be an integer >= 0"),
    (dict(step_size=0.0), "step_size must be > 0"),
    (dict(split="magic"), "split must be"),
])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdvBN("layer1", **kwargs)


def test_config_round_trip(tmp_path):
    adv = AdvBN("blocks.3", eps=0.5, steps=3, clamp_min=None)
    d = adv.config.to_dict()
    assert AdvBN.from_config(d).config == adv.config
    path = tmp_path / "advbn.yaml"
    adv.config.to_yaml(path)
    from advbn_aug import AdvBNConfig

    assert AdvBNConfig.from_yaml(path) == adv.config
    with pytest.raises(ValueError, match="unknown AdvBNConfig keys"):
        AdvBNConfig.from_dict({"layer": "x", "epsilon": 1})


@pytest.mark.parametrize("kwargs, field", [
    (dict(layer=""), "layer"), (dict(layer=True), "layer"), (dict(attack_every=0), "attack_every"),
    (dict(adv_fraction=0.0), "adv_fraction"), (dict(adv_fraction=1.5), "adv_fraction"),
    (dict(adv_fraction=True), "adv_fraction"), (dict(token_clamp_min=True), "token_clamp_min"),
    (dict(stats="group"), "stats"), (dict(attack_loss="mse"), "attack_loss"), (dict(layout="nwhc"), "layout"),
    (dict(layer="layer1", extra_layers=["layer1"]), "extra_layers"), (dict(extra_layers=[""]), "extra_layers"),
    (dict(extra_layers=["layer2"], warm_start=True), "extra_layers"), (dict(stats="instance", attack_every=2), "stats"),
])
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        AdvBNConfig(**kwargs)


def test_config_accepts_the_boundaries():
    cfg = AdvBNConfig(layer=2, eps=0.0, steps=0, adv_fraction=1, clamp_min=None, token_clamp_min=0,
                      extra_layers=["layer3"])
    assert cfg.extra_layers == ("layer3",) and cfg.layer == 2
