"""The ``advbn-aug`` console script.

Each subcommand lives in its own module that defines ``add_arguments(parser)`` and ``run(args) -> int``; the module
is imported only when its subcommand runs, so ``advbn-aug --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

# name -> (module, one-line help)
_COMMANDS: dict[str, tuple[str, str]] = {
    "recipe": ("advbn_aug.recipe", "run a recipe: fine-tuning arms, corruption evaluation, result table"),
    "eval": ("advbn_aug.eval.command", "evaluate a model or checkpoint on clean and corrupted data"),
    "deepaugment": ("advbn_aug.image.deepaugment_cli", "train DeepAugment networks / write a DeepAugment dataset"),
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
    cmd_parser = argparse.ArgumentParser(prog=f"advbn-aug {name}", description=_COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    return int(module.run(cmd_parser.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
