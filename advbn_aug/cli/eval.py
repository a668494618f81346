"""``advbn-aug eval``: evaluate a model or checkpoint on clean and corrupted images and write JSON, Markdown and
PNG reports (see :func:`advbn_aug.eval.evaluate_corruptions`); with ``--stylized``, also on Stylized-CIFAR-10
(:func:`advbn_aug.eval.stylized.evaluate_stylized`; ``stylized.json`` / ``stylized.md``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from advbn_aug.eval.corruptions import ALL_CORRUPTIONS, DATASETS

if TYPE_CHECKING:
    from torch import nn

    from advbn_aug.eval.stylized import StylizedConfig, StylizedResult

__all__ = ["add_arguments", "run"]


def _severities(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"severities must be integers in 1..5 like '1,3,5', got {text!r}") from None
    bad = [v for v in values if v not in range(1, 6)]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"severities must be in 1..5 (e.g. '1,2,3,4,5'), got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``eval`` flags (timm-style names)."""
    parser.add_argument("--model", default="resnet20",
                        help="resnet20 / resnet56 (CIFAR ResNets, pretrained unless --checkpoint) or a timm model name")
    parser.add_argument("--checkpoint", default=None,
                        help="state_dict file (torch.save(model.state_dict())) or a timm checkpoint")
    parser.add_argument("--bn", choices=("clean", "adv", "both"), default="clean",
                        help="BatchNorm route of a model saved with AdvBN attached: clean (default; ImageNet-C "
                             "protocol), adv (the auxiliary BatchNorms; the paper's protocol for style shifts), or "
                             "both (two reports, in <output>/bn_clean and <output>/bn_adv)")
    parser.add_argument("--num-classes", type=int, default=10, help="classes of the model head (default 10)")
    parser.add_argument("--source", choices=("generate", "cifar10-c", "imagenet-c"), default="generate",
                        help="generate corruptions from clean CIFAR-10 (default) or read CIFAR-10-C / ImageNet-C files")
    parser.add_argument("--data-dir", default=None,
                        help="generate: clean CIFAR-10 folder (default: shared data); cifar10-c / imagenet-c: the "
                             "benchmark folder")
    parser.add_argument("--split", default="test_lossless", choices=("test_lossless", "test", "train"),
                        help="clean CIFAR-10 split to corrupt (default test_lossless: 1,000 lossless test images)")
    parser.add_argument("--params", dest="dataset", choices=DATASETS, default="cifar10",
                        help="parameter table of generated corruptions: cifar10 (32 px) or imagenet (224 px)")
    parser.add_argument("--corruptions", default="benchmark",
                        help="comma-separated names, or 'benchmark' (15), 'extra' (4), 'all' (19), or 'none' (with "
                             "--stylized: only the stylized sets). Names: " + ", ".join(ALL_CORRUPTIONS))
    parser.add_argument("--severities", type=_severities, default=(1, 2, 3, 4, 5), help="e.g. '1,3,5' (default all)")
    parser.add_argument("--num-images", type=int, default=None, help="evaluate only the first N images per set")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0, help="seed of generated corruptions (default 0)")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    parser.add_argument("--no-amp", action="store_true", help="disable CUDA autocast")
    parser.add_argument("--workers", type=int, default=0, help="data loader workers for ImageNet-C folders")
    parser.add_argument("--baseline", default=None,
                        help="'alexnet' (published ImageNet-C errors) or an earlier results.json, for CE / mCE")
    parser.add_argument("--output", default="eval_output", help="report folder (default ./eval_output)")
    parser.add_argument("--cache-dir", default=None,
                        help="cache of generated sets (default $ADVBN_CACHE/corruptions or ~/.cache/advbn_aug/...)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the corrupted-set cache")
    parser.add_argument("--name", default=None, help="label of the model in reports (default: --model)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--tta", choices=("none", "full", "online", "all"), default="none",
                        help="test-time BatchNorm adaptation per evaluated set: none (default), full (statistics "
                             "re-estimated on the set), online (momentum updates batch by batch), or all three "
                             "(reports in <output>/tta_<mode>)")
    parser.add_argument("--tta-momentum", type=float, default=0.1, help="BatchNorm momentum of --tta online")
    from advbn_aug.config import add_config_arguments
    from advbn_aug.eval.stylized import INSTALL_HINT, StylizedConfig

    group = parser.add_argument_group(
        "Stylized-CIFAR-10", "a class-balanced CIFAR-10 test subset re-rendered by a style-transfer network with PACS "
        f"paintings as styles, cached like the corrupted sets (needs {INSTALL_HINT})")
    group.add_argument("--stylized", action="store_true", help="also evaluate on Stylized-CIFAR-10")
    add_config_arguments(group, StylizedConfig, prefix="stylized-")


def _stylized(args: argparse.Namespace, cfg: StylizedConfig, model: nn.Module, mean: tuple[float, ...],
              std: tuple[float, ...], tta: str, name: str) -> StylizedResult:
    """Evaluate on the Stylized-CIFAR-10 subset of the clean test split (``--data-dir`` with ``--source generate``)."""
    from advbn_aug.datasets.cifar10 import load_cifar10
    from advbn_aug.eval.stylized import evaluate_stylized

    x, y = load_cifar10("test", args.data_dir if args.source == "generate" else None)
    return evaluate_stylized(model, x, y, cfg, mean=mean, std=std, batch_size=args.batch_size, device=args.device,
                             amp=not args.no_amp, tta=tta, tta_momentum=args.tta_momentum, name=name,
                             cache_dir=args.cache_dir, use_cache=not args.no_cache, progress=not args.no_progress)


def _evaluations(args: argparse.Namespace) -> Iterator[tuple[str, str, nn.Module, tuple, tuple, str, str]]:
    """``(route, tta, model, mean, std, name, output)`` for every requested BatchNorm route x adaptation mode; each
    route's model is loaded once (adaptation hands it back unchanged). Loading errors propagate."""
    from advbn_aug.eval.evaluate import load_model

    routes = ("clean", "adv") if args.bn == "both" else (args.bn,)
    modes = ("none", "full", "online") if args.tta == "all" else (args.tta,)
    for route in routes:
        model, mean, std = load_model(args.model, args.checkpoint, args.num_classes, bn=route)
        for tta in modes:
            output = (args.output + (f"/bn_{route}" if len(routes) > 1 else "")
                      + (f"/tta_{tta}" if len(modes) > 1 else ""))
            name = args.name or args.model
            if args.bn != "clean":
                name = f"{name} [{route} BN]"
            if tta != "none":
                name = f"{name} [TTA {tta}]"
            yield route, tta, model, mean, std, name, output


def _clean_only(args: argparse.Namespace) -> int:
    """``--corruptions none`` without ``--stylized``: the clean accuracy on ``--data-dir``/``--split`` alone (e.g. a
    decoded test set from ``advbn-aug visualise make-testset``), per BatchNorm route and adaptation mode."""
    import json
    from pathlib import Path

    from advbn_aug.datasets.cifar10 import load_cifar10
    from advbn_aug.device import resolve_device
    from advbn_aug.eval.bn_adapt import adapted_predict
    from advbn_aug.eval.evaluate import iter_batches, predict, prepare_batch

    if args.dataset != "cifar10":
        print("advbn-aug eval: error: --corruptions none evaluates a CIFAR-10-format split (--data-dir/--split); "
              "for ImageNet-C pass the corruptions to evaluate", file=sys.stderr)
        return 2
    try:
        x, y = load_cifar10(args.split, args.data_dir)
    except (FileNotFoundError, ValueError) as err:
        print(f"advbn-aug eval: error: {err}", file=sys.stderr)
        return 2
    x, y = x[:args.num_images], y[:args.num_images]
    device = resolve_device(args.device)
    out: dict[str, float] = {}
    try:
        for route, tta, model, mean, std, name, _ in _evaluations(args):
            model.to(device)
            run_kw = dict(batch_size=args.batch_size, device=device, mean=mean, std=std, amp=not args.no_amp)
            preds = adapted_predict(predict, lambda xb, m=mean, s=std: prepare_batch(xb, device, m, s), model, x,
                                    lambda imgs: iter_batches(imgs, args.batch_size), tta, args.tta_momentum,
                                    **run_kw)[0]
            key = f"bn_{route}/tta_{tta}"
            out[key] = float((preds == y).mean())
            print(f"{name}: clean accuracy on {args.split} ({len(y)} images): {100 * out[key]:.2f}%")
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"advbn-aug eval: error: {err}", file=sys.stderr)
        return 2
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "clean.json").write_text(json.dumps({"split": args.split, "data_dir": args.data_dir,
                                                              "num_images": len(y), "accuracy": out}, indent=1))
    print(f"reports written to {args.output}/ (clean.json)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Build the model, evaluate (once per BatchNorm route and adaptation mode), write the reports and print the
    Markdown summaries."""
    from advbn_aug.config import config_from_args
    from advbn_aug.eval.evaluate import EvalConfig, evaluate_corruptions
    from advbn_aug.eval.report import format_markdown
    from advbn_aug.eval.stylized import StylizedConfig

    corruptions = args.corruptions.strip().lower() != "none"
    if not corruptions and not args.stylized:
        return _clean_only(args)
    stylized_cfg = config_from_args(args, StylizedConfig, prefix="stylized-") if args.stylized else None
    try:
        for _, tta, model, mean, std, name, output in _evaluations(args):
            stylized = _stylized(args, stylized_cfg, model, mean, std, tta, name) if stylized_cfg else None
            written = []
            if corruptions:
                cfg = EvalConfig(
                    corruptions=args.corruptions, severities=args.severities, source=args.source,
                    dataset=args.dataset, data_dir=args.data_dir, split=args.split, num_images=args.num_images,
                    batch_size=args.batch_size, seed=args.seed, device=args.device, amp=not args.no_amp,
                    workers=args.workers, mean=mean, std=std, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                    baseline=args.baseline, output=output, name=name, progress=not args.no_progress, tta=tta,
                    tta_momentum=args.tta_momentum,
                )
                print(format_markdown(evaluate_corruptions(model, config=cfg)))
                written = ["results.json", "results.md", "heatmap.png"] + (["baseline.png"] if args.baseline else [])
            if stylized is not None:
                written += [p.name for p in stylized.write(output)]
                print(stylized.to_markdown())
            print(f"reports written to {output}/ ({', '.join(written)})")
    except (ValueError, FileNotFoundError, TypeError, ImportError) as err:
        print(f"advbn-aug eval: error: {err}", file=sys.stderr)
        return 2
    return 0
