"""``advbn-aug visualise``: train a feature decoder, draw the grid of decoded AdvBN / MixStyle / DSU / real shifts,
write an adversarial-style test set. Flags come from :mod:`advbn_aug.visualise.config` (timm-style names)."""

from __future__ import annotations

import argparse
import logging
import sys

from advbn_aug.config import add_config_arguments, config_from_args
from advbn_aug.visualise.config import DecoderConfig, GridConfig, TestsetConfig

__all__ = ["add_arguments", "run"]

_DATA = "../shared/data"
_EXAMPLES = {
    "train-decoder": f"""examples (CIFAR-10 from {_DATA}; about 5 minutes on one CPU core):
  advbn-aug visualise train-decoder --threads 1
  advbn-aug visualise train-decoder --model resnet20 --layer layer1 --data-dir {_DATA}/cifar10 \\
      --train-images 2000 --epochs 2 --output runs/visualise/decoder-small
  # your own timm model on an image folder (class subfolders), 64 px:
  advbn-aug visualise train-decoder --model resnet18 --checkpoint model.pth --num-classes 7 --layer layer1 \\
      --dataset folder --data-dir path/to/images --img-size 64 --output runs/visualise/r18
interrupted runs continue from <output>/last.pt (--no-resume starts over).""",
    "grid": f"""examples:
  advbn-aug visualise grid --decoder runs/visualise/decoder/decoder.pt --data-dir {_DATA}/cifar10
  advbn-aug visualise grid --eps 0.5 1.1 --steps 3 6 --corruption fog --severity 3 \\
      --ft-checkpoint path/to/advbn_finetuned.pth --output runs/visualise/grid-ft
then open <output>/index.html.""",
    "make-testset": f"""examples:
  advbn-aug visualise make-testset --variant advbn --num-images 1000 --data-dir {_DATA}/cifar10
  advbn-aug visualise make-testset --variant adain --output runs/visualise/testset-adain
  advbn-aug eval --model resnet20 --data-dir runs/visualise/testset --split test_lossless \\
      --corruptions brightness --severities 1 --output runs/visualise/testset-eval
(eval's 'clean' accuracy is the accuracy on the written set.)""",
}
_CONFIGS: dict[str, tuple[type, str]] = {
    "train-decoder": (DecoderConfig, "train a decoder from a layer's features back to images (held-out PSNR)"),
    "grid": (GridConfig, "PNG grid + HTML page of decoded AdvBN, MixStyle, DSU, corruption and AdaIN shifts"),
    "make-testset": (TestsetConfig, "adversarial-style copy of a test set (advbn / adain / reconstruct), readable "
                                    "by advbn-aug eval"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One subcommand per tool; each subcommand's flags are the fields of its config dataclass."""
    sub = parser.add_subparsers(dest="tool", metavar="TOOL", required=True)
    for name, (cls, help_) in _CONFIGS.items():
        p = sub.add_parser(name, help=help_, description=help_, epilog=_EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_config_arguments(p, cls, prefix="")


def run(args: argparse.Namespace) -> int:
    """Build the tool's config from the flags (a bad value is a usage error), run it, print where the files are."""
    cls, _ = _CONFIGS[args.tool]
    cfg = config_from_args(args, cls, prefix="")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.tool == "train-decoder":
            from advbn_aug.visualise.train import train_decoder

            result = train_decoder(cfg)
            print(f"decoder: {result.path}  held-out PSNR {result.psnr:.2f} dB on {result.num_holdout} images  "
                  f"({result.num_train} training images, {result.steps} steps, {result.seconds:.0f} s wall, "
                  f"{result.cpu_seconds:.0f} s CPU)")
        elif args.tool == "grid":
            from advbn_aug.visualise.gallery import make_grid

            files = make_grid(cfg).files
            if files is not None:
                print(f"grid: {files.grid}\npage: {files.html} ({len(files.rows)} rows)")
        else:
            from advbn_aug.visualise.testset import make_testset

            res = make_testset(cfg)
            meta = res.meta or {}
            print(f"test set: {res.path} ({len(res.x)} {cfg.variant} images); reference model accuracy: source "
                  f"{meta.get('accuracy_source', 0):.3f}, decoded {meta.get('accuracy_decoded', 0):.3f}")
            print(f"evaluate: {meta.get('eval')}")
    except (ValueError, FileNotFoundError) as err:
        print(f"advbn-aug visualise {args.tool}: error: {err}", file=sys.stderr)
        return 2
    return 0
