"""Run your own timm checkout's ``train.py`` with AdvBN.

::

    advbn-aug timm-train --timm-train ~/pytorch-image-models/train.py \\
        --data-dir /data/imagenet --model resnet50 --pretrained --lr 1e-3 --epochs 20 --amp \\
        --advbn-layer layer1 --advbn-eps 1.1 --advbn-steps 6 --advbn-step-size 0.2

    torchrun --nproc_per_node 8 -m advbn_aug.integrations.timm.launcher --timm-train ~/pytorch-image-models/train.py ...

The launcher imports ``train.py`` as a module (its ``if __name__ == '__main__'`` block does not run), adds the
``--advbn-*`` group to its global ``parser``, and then:

* timm >= 1.0.23 (``train.py`` delegates each step to ``timm.task.ClassificationTask``): replaces
  ``train.ClassificationTask`` by :class:`~advbn_aug.integrations.timm.task.AdvBNTask` configured from the flags.
  timm's own EMA, ``--torchcompile``, DDP, AMP, ``--aug-splits``/``--jsd-loss``, ``--resume`` and ``CheckpointSaver``
  run unchanged; checkpoints hold plain timm weights plus ``task_state['advbn_aux']``.
* older timm, or ``legacy_train.py`` (no task API): wraps ``train.create_model`` (AdvBN attaches right after the
  model is built, so the optimizer, EMA and DDP see it) and ``train.train_one_epoch`` (its ``loss_fn`` gains the
  adversarial term). Checkpoints then contain the ``*.aux_bn.*`` keys: ``--resume`` works as is; for a plain model
  run ``advbn-aug timm-train --export-plain SRC DST``. ``--sync-bn``/``--split-bn`` and ``--advbn-policy`` are not
  supported there.

Then ``train.main()`` runs with ``sys.argv`` set to the remaining flags.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch

from advbn_aug.feature.advbn import AdvBN

try:
    from timm.task import TrainingTask
except ImportError:  # pragma: no cover - timm < 1.0.23
    TrainingTask = ()  # type: ignore[misc,assignment]

from advbn_aug.integrations.timm.settings import (
    AdvBNSettings,
    add_advbn_args,
    check_timm_args,
    settings_from_args,
    timm_version,
)
from advbn_aug.integrations.timm.task import AdvBNTask, adversarial_criterion, export_plain_checkpoint, has_task_api

__all__ = ["load_train_module", "patch_train_module", "main", "run_argv"]


class LauncherError(RuntimeError):
    """A problem with ``--timm-train`` or the flags, reported as a command-line error."""


def load_train_module(path: str, module_name: str = "_advbn_timm_train") -> ModuleType:
    """Import the ``train.py`` at ``path`` as a module (its directory goes on ``sys.path`` for local imports)."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise LauncherError(f"--timm-train: no such file: {path} (pass the train.py of your timm checkout, "
                            "e.g. ~/pytorch-image-models/train.py; or use `advbn-aug train` without one)")
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LauncherError(f"--timm-train: cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(module_name, None)
        raise
    for name, kind in (("parser", "its global argparse parser"), ("main", "its main() function")):
        if not hasattr(module, name):
            raise LauncherError(f"--timm-train {path} has no `{name}` ({kind}): is this timm's train.py?")
    if not isinstance(module.parser, argparse.ArgumentParser):
        raise LauncherError(f"--timm-train {path}: `parser` is a {type(module.parser).__name__}, "
                            "not an argparse.ArgumentParser")
    return module


def _find_task(args: tuple, kwargs: dict) -> list[AdvBNTask]:
    found = [a for a in (*args, *kwargs.values()) if isinstance(a, AdvBNTask)]
    return found or AdvBNTask.live_tasks()


def _task_epoch_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    """``train_one_epoch`` that first tells the AdvBN task which epoch runs (for ``--advbn-start-epoch``) and which
    optimizer steps it (see :meth:`AdvBNTask.watch_optimizer`)."""

    def train_one_epoch(*args: Any, **kwargs: Any) -> Any:
        epoch = args[0] if args else kwargs.get("epoch", 0)
        values = (*args, *kwargs.values())
        if not any(isinstance(a, AdvBNTask) for a in values) and any(isinstance(a, TrainingTask) for a in values):
            other = next(type(a).__name__ for a in values if isinstance(a, TrainingTask))
            raise LauncherError(f"train.py trains a {other}, not AdvBNTask: it must build its task through the "
                                "module-level name `ClassificationTask` (from timm.task import ClassificationTask)")
        optimizers = [a for a in values if isinstance(a, torch.optim.Optimizer)]
        for task in _find_task(args, kwargs):
            task.set_epoch(int(epoch))
            for optimizer in optimizers:
                task.watch_optimizer(optimizer)
        return original(*args, **kwargs)

    train_one_epoch.__wrapped__ = original  # type: ignore[attr-defined]
    return train_one_epoch


class _Legacy:
    """State of the pre-task (legacy) patching: the AdvBN attached in ``create_model`` and the current epoch."""

    def __init__(self, settings: AdvBNSettings):
        self.settings = settings
        self.advbn: AdvBN | None = None
        self.epoch = 0

    def create_model_wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def create_model(*args: Any, **kwargs: Any) -> Any:
            model = original(*args, **kwargs)
            if self.settings.advbn is not None and self.advbn is None and not kwargs.get("features_only"):
                self.advbn = AdvBN.from_config(self.settings.advbn).attach(model)
            return model

        return create_model

    def loss_wrapper(self, loss_fn: Callable[..., Any]) -> Callable[..., Any]:
        def adv_loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            loss = loss_fn(output, target)
            adv = self.advbn
            if adv is None or adv.cached_feature is None or self.epoch < self.settings.start_epoch:
                if adv is not None:
                    adv.discard()
                return loss
            splits = output.shape[0] // target.shape[0]
            adv_target = target.repeat(splits, *([1] * (target.dim() - 1))) if splits > 1 else target
            return loss + self.settings.weight * adv.adversarial_loss(adv_target, adversarial_criterion(loss_fn))

        return adv_loss_fn

    def train_one_epoch_wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def train_one_epoch(*args: Any, **kwargs: Any) -> Any:
            self.epoch = int(args[0] if args else kwargs.get("epoch", 0))
            if "loss_fn" in kwargs:
                kwargs["loss_fn"] = self.loss_wrapper(kwargs["loss_fn"])
            elif len(args) > 4:  # train_one_epoch(epoch, model, loader, optimizer, loss_fn, args, ...)
                args = (*args[:4], self.loss_wrapper(args[4]), *args[5:])
            else:
                raise LauncherError("legacy train_one_epoch: cannot find its loss_fn argument "
                                    "(expected train_one_epoch(epoch, model, loader, optimizer, loss_fn, args, ...))")
            return original(*args, **kwargs)

        train_one_epoch.__wrapped__ = original  # type: ignore[attr-defined]
        return train_one_epoch


def patch_train_module(train: ModuleType, argv: Sequence[str]) -> str:
    """Add the ``--advbn-*`` group to ``train.parser`` and swap in AdvBN; returns the mode (``task``/``legacy``).

    ``argv`` are the flags ``train.main()`` will parse; the ``--advbn-*`` ones are read here (and again from timm's
    parsed args where ``train._parse_args`` exists, so ``-c config.yaml`` values apply).
    """
    try:
        add_advbn_args(train.parser)
    except argparse.ArgumentError as e:
        raise LauncherError(f"train.parser already has AdvBN flags ({e}); was it patched twice?") from e
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_advbn_args(own)
    own.add_argument("--mean", type=float, nargs="+", default=None)
    own.add_argument("--std", type=float, nargs="+", default=None)
    pre, _ = own.parse_known_args(list(argv))
    try:
        settings = settings_from_args(pre)
    except (ValueError, OSError) as e:
        raise LauncherError(str(e)) from e

    if hasattr(train, "ClassificationTask") and has_task_api():
        mode = "task"
        train.ClassificationTask = AdvBNTask.configured(settings)
        if hasattr(train, "train_one_epoch"):
            train.train_one_epoch = _task_epoch_wrapper(train.train_one_epoch)
    elif hasattr(train, "train_one_epoch") and hasattr(train, "create_model"):
        mode = "legacy"
        if settings.policy is not None:
            raise LauncherError(f"--advbn-policy needs timm's task API (timm >= 1.0.23, found "
                                f"{'.'.join(map(str, timm_version()))}, or a legacy train.py)")
        legacy = _Legacy(settings)
        train.create_model = legacy.create_model_wrapper(train.create_model)
        train.train_one_epoch = legacy.train_one_epoch_wrapper(train.train_one_epoch)
        train._advbn_legacy = legacy
    else:
        raise LauncherError("train.py has neither `ClassificationTask` (timm >= 1.0.23 task API) nor "
                            "`train_one_epoch` + `create_model` (older loop): cannot hook AdvBN into it")

    parse = getattr(train, "_parse_args", None)
    if callable(parse):
        def _parse_args(*a: Any, **kw: Any) -> Any:
            out = parse(*a, **kw)
            args = out[0] if isinstance(out, tuple) else out
            try:
                final = settings_from_args(args)
                check_timm_args(args, final)
                for flag in ("sync_bn", "split_bn"):
                    if mode == "legacy" and getattr(args, flag, False) and final.enabled:
                        raise ValueError(f"--{flag.replace('_', '-')} converts the BatchNorms after AdvBN attached "
                                         "in the legacy (pre-task) loop: drop it or use timm >= 1.0.23")
            except (ValueError, OSError) as e:
                train.parser.error(str(e))
            if mode == "task":
                train.ClassificationTask = AdvBNTask.configured(final)
            else:
                train._advbn_legacy.settings = final
            return out

        train._parse_args = _parse_args
    return mode


DESCRIPTION = "run a timm checkout's train.py with AdvBN: the --advbn-* flags below are added to its parser"
PROG = "python -m advbn_aug.integrations.timm.launcher"


def _launcher_parser(prog: str, help_only: bool = False) -> argparse.ArgumentParser:
    """The launcher's own flags; ``help_only`` adds the ``--advbn-*`` group for ``--help`` without a train.py."""
    p = argparse.ArgumentParser(prog=prog, add_help=False, description=DESCRIPTION,
                                epilog="every other flag goes to train.py: --timm-train PATH --help lists them")
    p.add_argument("--timm-train", metavar="PATH", help="path to train.py of your timm checkout")
    p.add_argument("--export-plain", nargs=2, metavar=("SRC", "DST"),
                   help="write DST = checkpoint SRC without the *.aux_bn.* keys, then exit")
    p.add_argument("-h", "--help", action="store_true", default=False, help="show this help (with --timm-train: "
                   "train.py's help, AdvBN flags included) and exit")
    if help_only:
        add_advbn_args(p)
    return p


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> Any:
    """Parse ``--timm-train``, patch that train.py and run its ``main()`` (returns what it returns)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    launcher = _launcher_parser(prog)
    ours, rest = launcher.parse_known_args(argv)
    if ours.export_plain:
        removed = export_plain_checkpoint(*ours.export_plain)
        print(f"wrote {ours.export_plain[1]} ({len(removed)} aux_bn entries removed)")
        return removed
    if not ours.timm_train:
        if ours.help:
            _launcher_parser(prog, help_only=True).print_help()
            return None
        launcher.error("--timm-train PATH/TO/train.py is required (or use `advbn-aug train`, the self-contained "
                       "trainer, without a timm checkout)")
    if ours.help:
        rest = [*rest, "--help"]
    try:
        train = load_train_module(ours.timm_train)
        mode = patch_train_module(train, rest)
    except LauncherError as e:
        launcher.error(str(e))
    print(f"advbn: timm {'.'.join(map(str, timm_version()))}, {mode} mode, running {ours.timm_train}",
          file=sys.stderr)
    saved = sys.argv
    sys.argv = [os.path.abspath(ours.timm_train), *rest]
    try:
        return train.main()
    finally:
        sys.argv = saved


def run_argv(argv: Sequence[str], prog: str) -> int:
    """``advbn-aug timm-train``: the launcher with the raw arguments (unknown flags go to train.py's parser)."""
    main(argv, prog=prog)
    return 0


if __name__ == "__main__":
    main()
