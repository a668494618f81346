"""What every benchmark's config shares: the arms (:class:`ArmConfig`), the training fields (:class:`TrainConfig`)
with their ``advbn-aug recipe`` flags, the checks and ``with_overrides`` of a config, and the settings digest that
matches a finished run to its config.

:class:`TrainConfig` declares the shared fields (type and help) once. The benchmark configs
(:class:`~advbn_aug.recipe.cifar10.config.RecipeConfig`, :class:`~advbn_aug.recipe.pacs.config.PACSConfig`) list
them again with their own defaults, in their own field order: a config's fields are written to ``config.yaml`` and
``results.json`` in declaration order, and a common base class would move the shared fields first in both files.
``tests/recipe/core/test_config.py`` checks that both declare every :class:`TrainConfig` field with its type.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from advbn_aug.config import UNSET, DictConfig, add_config_arguments

__all__ = ["ArmConfig", "TrainConfig", "Overridable", "digest", "load_arms", "check_shared", "add_train_arguments",
           "train_overrides"]

_C = TypeVar("_C", bound="Overridable")


def digest(obj: Any, n: int = 12) -> str:
    """The first ``n`` hex digits of the sha256 of ``obj`` as sorted-key JSON (the train / eval keys of a run)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _mixstyle_config() -> type:
    from advbn_aug.feature.mixstyle import MixStyleConfig

    return MixStyleConfig


def _dsu_config() -> type:
    from advbn_aug.feature.dsu import DSUConfig

    return DSUConfig


# feature-statistics augmenters an arm can add (their config classes, imported lazily)
_STOCHASTIC_FEATURES = {"mixstyle": _mixstyle_config, "dsu": _dsu_config}


@dataclass
class ArmConfig(DictConfig):
    """One arm. ``augmix``: AugMix views + JSD (paper settings: 2 views, severity 3, width 3, JSD weight 12);
    ``deepaugment``: train on the clean subset mixed with its DeepAugment copies (CAE + EDSR); ``advbn``: AdvBN
    after the config's ``advbn['layer']``, with this arm's ``advbn_options`` (``AdvBNConfig`` keys, e.g. a cheaper
    attack schedule) over the shared settings; ``features``: stochastic feature-statistics augmenters, one
    ``PolicyConfig.features`` spec each (``{"type": "mixstyle", "layer": "layer1"}``, ``{"type": "dsu", ...}``);
    ``train: false`` evaluates the pretrained model without fine-tuning."""

    name: str
    description: str = ""
    augmix: bool = False
    deepaugment: bool = False
    advbn: bool = False
    train: bool = True
    advbn_options: dict[str, Any] = field(default_factory=dict)
    features: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"arm name must be a non-empty identifier (letters, digits, _), got {self.name!r}")
        for spec in self.features:
            if not isinstance(spec, dict) or spec.get("type") not in _STOCHASTIC_FEATURES:
                raise ValueError(f"arm {self.name!r}: each features entry must be a dict with type one of "
                                 f"{list(_STOCHASTIC_FEATURES)}, got {spec!r} (AdvBN is switched on with advbn: true)")
            config_class = _STOCHASTIC_FEATURES[spec["type"]]()
            config_class.from_dict({k: v for k, v in spec.items() if k != "type"})  # bad keys/values fail here
        if self.advbn_options:
            from advbn_aug.feature.config import AdvBNConfig

            if not self.advbn:
                raise ValueError(f"arm {self.name!r} sets advbn_options but not advbn: true")
            if "layer" in self.advbn_options:
                raise ValueError(f"arm {self.name!r}: the AdvBN layer is shared by every arm (it fixes the frozen "
                                 "prefix); set it with --advbn-layer, not in advbn_options")
            AdvBNConfig.from_dict(dict(self.advbn_options))  # unknown keys / bad values fail here, not mid-run

    def to_dict(self) -> dict[str, Any]:
        """As stored with each run; ``advbn_options`` only when set, so runs finished before it existed still match."""
        d = super().to_dict()
        for key in ("advbn_options", "features"):
            if not d[key]:
                del d[key]
        return d


def load_arms(folder: str | Path | None, base: dict[str, ArmConfig]) -> dict[str, ArmConfig]:
    """A benchmark's built-in arms ``base``, updated with every ``*.yaml`` arm file in ``folder`` (if given)."""
    arms = dict(base)
    if folder is None:
        return arms
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"arms folder {folder} does not exist")
    for path in sorted(folder.glob("*.yaml")):
        arm = ArmConfig.from_yaml(path)
        arms[arm.name] = arm
    return arms


def _help(text: str, **extra: Any) -> Any:
    return field(metadata={"help": text, **extra})


@dataclass
class TrainConfig:
    """The fields every benchmark config has, with their help: the schema the configs follow and the training flags
    derive from (never instantiated; no defaults: each benchmark and preset has its own). SGD with momentum for
    ``steps`` steps of ``batch_size`` clean images, lr x ``decay_rate`` after ``decay_at * steps``."""

    model: str = _help("the pretrained model")
    arms: list[str] = _help("arms to run, in order (see --arms-dir)")
    seeds: list[int] = _help("training seeds; each arm x seed is one run")
    steps: int = _help("optimizer steps per run")
    batch_size: int = _help("clean images per step")
    lr: float = _help("SGD learning rate")
    momentum: float = _help("SGD momentum")
    weight_decay: float = _help("SGD weight decay")
    decay_at: float = _help("fraction of the steps where lr decays")
    decay_rate: float = _help("lr factor after --decay-at")
    train_subset: int | None = _help("class-balanced training subset size", parse=int)
    advbn: dict[str, Any] = _help("AdvBN settings (AdvBNConfig keys)")
    augmix: dict[str, Any] = _help("AugMix settings (AugMixConfig keys)")
    jsd_weight: float = _help("weight of AugMix's Jensen-Shannon consistency term")
    eval_batch_size: int = _help("evaluation batch size")
    checkpoint_interval: int = _help("steps between resumable checkpoints")
    extras: list[str] = _help("evaluation modes added to each run (cifar10: adv_route tta stylized decoded; pacs: "
                              "adv_route), or 'none'", metavar="MODE")


# TrainConfig fields without a flag of their own here: --model is each benchmark's (its choices differ), AdvBN has
# its --advbn-* flags, AugMix and the JSD weight have none; --batch-size also answers to -b (added by hand)
_NO_FLAG = ("model", "advbn", "augmix", "jsd_weight")
_FLAGS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in _NO_FLAG)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the shared training fields (``--steps``, ``-b/--batch-size``, ``--lr``, ...), each ``None`` when
    not given (the preset's value stands; :func:`train_overrides` reads the given ones)."""
    group = parser.add_argument_group("training", "settings every benchmark shares (default: the preset's)")
    add_config_arguments(group, TrainConfig, prefix="", exclude=(*_NO_FLAG, "batch_size"), defaults=UNSET)
    batch = next(f for f in dataclasses.fields(TrainConfig) if f.name == "batch_size")
    group.add_argument("-b", "--batch-size", type=int, help=batch.metadata["help"])
    parser.set_defaults(**dict.fromkeys(_FLAGS))


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The shared training fields given on the command line (``--extras none``: no extra evaluation modes)."""
    given = {name: getattr(args, name) for name in _FLAGS if getattr(args, name, None) is not None}
    if given.get("extras") == ["none"]:
        given["extras"] = []
    return given


def check_shared(cfg: Any, ints: tuple[str, ...], optional_ints: tuple[str, ...]) -> None:
    """The checks every recipe config shares: ``ints`` are integers >= 1, ``optional_ints`` too or ``None``; distinct
    seeds, a usable SGD schedule, at least one arm."""
    for name in ints:
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    for name in optional_ints:
        v = getattr(cfg, name)
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be an integer >= 1 or null, got {v!r}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {cfg.seeds!r}")
    if not cfg.lr > 0 or not 0 <= cfg.decay_at <= 1 or not cfg.decay_rate > 0:
        raise ValueError("need lr > 0, 0 <= decay_at <= 1 and decay_rate > 0")
    if not cfg.arms:
        raise ValueError("arms is empty: pass at least one arm")


class Overridable(DictConfig):
    """``with_overrides`` for the recipe configs."""

    def with_overrides(self: _C, **kw: Any) -> _C:
        """A copy with the given fields replaced (``None`` values are ignored; dict fields are merged)."""
        data = self.to_dict()
        for k, v in kw.items():
            if v is None:
                continue
            if isinstance(data.get(k), dict) and isinstance(v, dict):
                data[k] = {**data[k], **v}
            else:
                data[k] = v
        return type(self).from_dict(data)
