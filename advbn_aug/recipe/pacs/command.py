"""The PACS side of ``advbn-aug recipe``: its flags, the config they make and its default folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from advbn_aug.recipe.core.config import train_overrides
from advbn_aug.recipe.pacs.config import PACS_PRESETS, PROTOCOLS, PACSConfig, ema_decay_for

__all__ = ["add_pacs_arguments", "pacs_config_from_args", "pacs_default_folders"]

# flags of the CIFAR-10 recipe that mean nothing for PACS (rejected rather than silently ignored)
_CIFAR_ONLY = ("model", "eval_images", "corruptions", "severities", "clean_test_images", "tta_images")


def add_pacs_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("PACS", "the task of `advbn-aug recipe pacs` (recipes/pacs/README.md)")
    group.add_argument("--protocol", choices=PROTOCOLS, default=None,
                       help="single_source (default: train on --domain, test on the other three) or leave_one_out "
                       "(train on the other three domains' official train lists, test on --domain)")
    group.add_argument("--domain", default=None, help="the source (single_source; default photo) or the held-out "
                       "target (leave_one_out; default sketch)")
    group.add_argument("--img-size", type=int, default=None, help="train/test resolution in px (default 128)")
    group.add_argument("--test-images", type=int, default=None, help="images per target domain (default: all)")
    group.add_argument("--ema-decay", default=None, metavar="DECAY", help="weight averaging: a decay in [0, 1), "
                       "'auto' (the recipe's rule for the run's --steps: decay ** (steps / 2) = 0.01) or 'none' "
                       "(off); default: the preset's (leave_one_out_sketch: 0.991 for its 1,020 steps; full: none)")


def pacs_config_from_args(args: argparse.Namespace, advbn: dict | None) -> PACSConfig:
    """The PACS config of the parsed flags (``advbn``: the ``--advbn-*`` values given, already validated)."""
    from advbn_aug.config import ConfigArgumentError

    given = [f"--{k.replace('_', '-')}" for k in _CIFAR_ONLY if getattr(args, k, None) is not None]
    if given:
        raise ConfigArgumentError(f"{', '.join(given)}: CIFAR-10 recipe flag(s), not used by the PACS recipe")
    if args.preset not in (None, *PACS_PRESETS):
        raise ConfigArgumentError(f"--preset {args.preset}: the PACS recipe has presets {list(PACS_PRESETS)}")
    if args.tiny and args.preset not in (None, "tiny"):
        raise ConfigArgumentError(f"--tiny and --preset {args.preset} contradict each other: pass one")
    base = PACS_PRESETS["tiny" if args.tiny else args.preset or "full"]
    if args.config:
        if not Path(args.config).is_file():
            raise FileNotFoundError(f"--config {args.config} does not exist")
        base = PACSConfig.from_yaml(Path(args.config))
    protocol = args.protocol or base.protocol
    domain = args.domain or (base.domain if protocol == base.protocol else
                             {"single_source": "photo", "leave_one_out": "sketch"}[protocol])
    cfg = base.with_overrides(**train_overrides(args), protocol=protocol, domain=domain, img_size=args.img_size,
                              test_images=args.test_images, advbn=advbn or None)
    decay = getattr(args, "ema_decay", None)
    if decay is None:
        return cfg
    return PACSConfig.from_dict({**cfg.to_dict(), "ema_decay": _ema_decay(decay, cfg.steps)})


def _ema_decay(text: str, steps: int) -> float | None:
    """``--ema-decay``: ``none``, ``auto`` (:func:`ema_decay_for` of ``steps``) or a number in [0, 1)."""
    from advbn_aug.config import ConfigArgumentError

    if text.lower() == "none":
        return None
    if text.lower() == "auto":
        return ema_decay_for(steps)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise ConfigArgumentError(f"--ema-decay {text}: give a decay in [0, 1), 'auto' (the recipe's rule for "
                                  f"--steps) or 'none'")
    return value


def pacs_default_folders(tiny: bool, cfg: PACSConfig) -> tuple[Path, Path]:
    """``(output, runs_dir)`` of a task: ``recipes/pacs/results/<task>`` and ``recipes/pacs/runs/<task>`` (ignored
    by git); for ``--tiny`` both under ``runs/pacs-tiny/`` (ignored by git)."""
    if tiny:
        return Path("runs/pacs-tiny") / cfg.task, Path("runs/pacs-tiny") / cfg.task / "runs"
    return Path("recipes/pacs/results") / cfg.task, Path("recipes/pacs/runs") / cfg.task
