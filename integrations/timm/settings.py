"""The ``--advbn-*`` flags of timm's train.py and the trainer, what they build (:class:`AdvBNSettings`: an AdvBN or a
Policy config, the loss weight and start epoch), and the checks of timm flags and versions against them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from advbn_aug.config import add_config_arguments, config_from_args
from advbn_aug.feature.advbn import AdvBNConfig
from advbn_aug.policy import PolicyConfig

__all__ = ["AdvBNSettings", "add_advbn_args", "settings_from_args", "check_timm_args", "dual_batch_norm",
           "timm_version", "SPLIT_BN_VERSION"]

# timm's convert_splitbn_model dropped BatchNormAct2d's activation and drop before 1.0.31 (a silently different model)
SPLIT_BN_VERSION = (1, 0, 31)


def timm_version() -> tuple[int, ...]:
    """The installed timm version as an integer tuple (``1.0.31.dev0`` -> ``(1, 0, 31)``)."""
    import timm

    parts = []
    for p in timm.__version__.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def add_advbn_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add the ``--advbn-*`` group (timm-style flag names) to ``parser``; returns the group.

    One flag per :class:`~advbn_aug.feature.config.AdvBNConfig` field (``--advbn-layer``, ``--advbn-eps``, ...,
    ``--advbn-dual-bn/--advbn-no-dual-bn``; see :mod:`advbn_aug.config`), plus the task's own flags.
    """
    g = parser.add_argument_group("AdvBN parameters", "adversarial feature-statistics augmentation (advbn_aug)")
    add_config_arguments(g, AdvBNConfig, prefix="advbn-")
    g.add_argument("--advbn-weight", type=float, default=1.0, metavar="W",
                   help="weight of the adversarial loss term (default: 1.0; 0 keeps AdvBN's frozen prefix but skips "
                        "the adversarial pass: a fair control arm)")
    g.add_argument("--advbn-start-epoch", type=int, default=0, metavar="N",
                   help="first epoch with the adversarial term (clean warm-up before it; default: 0)")
    g.add_argument("--advbn-policy", default="", metavar="YAML",
                   help="advbn_aug PolicyConfig YAML (image stages, AugMix/JSD, feature augmenters, loss weights); "
                        "replaces the other --advbn-* flags except --advbn-start-epoch")
    g.add_argument("--advbn-off", action="store_true", default=False,
                   help="disable AdvBN (plain timm training through the same script, for baselines)")
    return g


@dataclass
class AdvBNSettings:
    """What :class:`AdvBNTask` builds: an AdvBN config or a Policy config, plus the loss weight and start epoch.

    ``mean``/``std`` (Policy only) are the normalisation of the loader's batches; ``None``: the model's default.
    """

    advbn: AdvBNConfig | None = field(default_factory=AdvBNConfig)
    policy: PolicyConfig | None = None
    weight: float = 1.0
    start_epoch: int = 0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.advbn is not None and self.policy is not None:
            raise ValueError("give either an AdvBN config or a Policy config, not both")
        if not self.weight >= 0:
            raise ValueError(f"--advbn-weight must be >= 0, got {self.weight}")
        if self.start_epoch < 0:
            raise ValueError(f"--advbn-start-epoch must be >= 0, got {self.start_epoch}")

    @property
    def enabled(self) -> bool:
        return self.advbn is not None or self.policy is not None


def settings_from_args(args: argparse.Namespace) -> AdvBNSettings:
    """Build :class:`AdvBNSettings` from parsed ``--advbn-*`` flags (validates them: clear errors on bad values)."""
    mean = tuple(args.mean) if getattr(args, "mean", None) else None
    std = tuple(args.std) if getattr(args, "std", None) else None
    common = dict(weight=args.advbn_weight, start_epoch=args.advbn_start_epoch, mean=mean, std=std)
    for old, new in (("advbn_no_dual_bn", "advbn_dual_bn"), ("advbn_no_freeze_prefix", "advbn_freeze_prefix")):
        if getattr(args, old, None) is not None:  # a key of timm's -c config.yaml from before the derived flags
            raise ValueError(f"config key {old}: true is now {new}: false (flags --advbn-no-... are unchanged)")
    if args.advbn_off:
        return AdvBNSettings(advbn=None, **common)
    if args.advbn_policy:
        return AdvBNSettings(advbn=None, policy=PolicyConfig.from_yaml(args.advbn_policy), **common)
    return AdvBNSettings(advbn=config_from_args(args, AdvBNConfig, prefix="advbn-"), **common)


def dual_batch_norm(settings: AdvBNSettings) -> bool:
    """Whether ``settings`` give downstream BatchNorms an adversarial copy (an AdvBN or a Policy ``advbn`` feature
    with ``dual_bn`` on)."""
    if settings.advbn is not None:
        return settings.advbn.dual_bn
    if settings.policy is not None:
        default = AdvBNConfig().dual_bn
        return any(f.get("type") == "advbn" and f.get("dual_bn", default) for f in settings.policy.features)
    return False


def check_timm_args(args: argparse.Namespace, settings: AdvBNSettings) -> None:
    """Reject timm flags that conflict with AdvBN (raises ``ValueError`` with the reason)."""
    if not settings.enabled:
        return
    if getattr(args, "split_bn", False) and dual_batch_norm(settings):
        raise ValueError("--split-bn converts every BatchNorm to timm's SplitBatchNorm2d (aux_bn per aug split), "
                         "which clashes with AdvBN's own dual BatchNorms: drop --split-bn, or add "
                         "--advbn-no-dual-bn (with --advbn-policy: dual_bn: false in its advbn features) to keep "
                         "timm's split BN and run the adversarial features through it")
    if getattr(args, "split_bn", False) and timm_version() < SPLIT_BN_VERSION:
        raise ValueError(f"--split-bn needs timm >= {'.'.join(map(str, SPLIT_BN_VERSION))} (this is "
                         f"{'.'.join(map(str, timm_version()))}): older timm's convert_splitbn_model drops the "
                         "activation of BatchNormAct2d layers; pip install 'timm>=1.0.31', or drop --split-bn")
    if settings.policy is not None and settings.policy.augmix is not None and (getattr(args, "aug_splits", 0) or 0) > 1:
        raise ValueError("the --advbn-policy makes its own AugMix views; do not combine it with timm's --aug-splits")
    if settings.policy is not None and (getattr(args, "mixup", 0) or getattr(args, "cutmix", 0)):
        raise ValueError("--advbn-policy expects class-index targets: disable --mixup/--cutmix")
