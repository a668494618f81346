"""The ``advbn-aug`` console script.

Each subcommand lives in its own module, imported only when its subcommand runs (so ``advbn-aug --help`` stays fast).
The module either defines ``add_arguments(parser)`` and ``run(args) -> int``, or, if it parses its own command line
(``timm-train`` passes unknown flags through to timm's parser), ``run_argv(argv, prog) -> int``.
A :class:`~advbn_aug.config.ConfigArgumentError` from ``run`` is reported as a usage error (exit status 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from advbn_aug.config import ConfigArgumentError

__all__ = ["main"]

# name -> (module, one-line help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "recipe": ("advbn_aug.cli.recipe", "run a recipe: fine-tuning arms, corruption evaluation, result table"),
    "eval": ("advbn_aug.cli.eval", "evaluate a model or checkpoint on clean and corrupted data"),
    "deepaugment": ("advbn_aug.cli.deepaugment", "train DeepAugment networks / write a DeepAugment dataset"),
    "train": ("advbn_aug.integrations.timm.trainer", "train a timm model with AdvBN (self-contained trainer with "
              "timm's flag names)"),
    "timm-train": ("advbn_aug.integrations.timm.launcher", "run your timm checkout's train.py with AdvBN "
                   "(--timm-train PATH/TO/train.py)"),
    "layers": ("advbn_aug.cli.layers", "list candidate AdvBN layers of a timm or torchvision model"),
    "visualise": ("advbn_aug.cli.visualise", "decode AdvBN-perturbed features to images (decoder, grid, test set)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="advbn-aug", description="Adversarial feature augmentation toolkit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in _COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] not in _COMMANDS:
        parser.parse_args(argv or ["--help"])  # prints help / the unknown-command error and exits
        return 2
    name = argv[0]
    module = importlib.import_module(_COMMANDS[name][0])
    prog = f"advbn-aug {name}"
    if hasattr(module, "run_argv"):
        return int(module.run_argv(argv[1:], prog=prog) or 0)
    cmd_parser = argparse.ArgumentParser(prog=prog, description=_COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except ConfigArgumentError as e:
        cmd_parser.error(str(e))


if __name__ == "__main__":
    raise SystemExit(main())
