"""The ``advbn-aug recipe`` command: its flags, the config they make, the default folders, and the run."""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from advbn_aug.eval.checkpoint import CheckpointError
from advbn_aug.recipe.cifar10.config import GPU_WORKERS, PRESETS, TINY, RecipeConfig
from advbn_aug.recipe.core.benchmark import benchmark_of
from advbn_aug.recipe.core.config import add_train_arguments, train_overrides
from advbn_aug.recipe.core.parallel import WorkerError
from advbn_aug.recipe.core.runner import run_recipe
from advbn_aug.recipe.pacs.command import add_pacs_arguments, pacs_config_from_args, pacs_default_folders
from advbn_aug.recipe.pacs.config import PACS_PRESETS, PACSConfig

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)
BENCHMARKS = ("cifar10", "pacs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=BENCHMARKS + ("imagenet",), help="recipe to run (cifar10, pacs; "
                        "imagenet recipes are shell commands in recipes/imagenet/)")
    parser.add_argument("--tiny", action="store_true", help="toy scale (< 5 min on CPU): same pipeline, short table "
                        "(= --preset tiny)")
    parser.add_argument("--preset", choices=tuple(dict.fromkeys([*PRESETS, *PACS_PRESETS])), default=None,
                        help="named settings: full (the default: the paper's lr 0.001 over one pass of the 50,000 "
                        "training images, 5 seeds), short (the first tables: lr 0.01, 100 steps from 5,000 images, "
                        "3 seeds), tiny, gpu (the table on one GPU: the full settings for the main arms, 10 seeds, "
                        f"{GPU_WORKERS} workers, recipes/cifar10/results_gpu); pacs: full (single-source photo, "
                        "3 seeds, recipes/pacs/README.md), "
                        "leave_one_out_sketch (the leave-one-domain-out sketch table), tiny")
    parser.add_argument("--config", default=None, help="recipe YAML (RecipeConfig keys); flags override it")
    parser.add_argument("--arms-dir", default=None, help="folder of arm YAML files (adds/overrides built-in arms)")
    parser.add_argument("--model", default=None, choices=("resnet20", "resnet56"))
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (shared *_jpeg.npz or torchvision's "
                        "cifar-10-batches-py); default: ../shared/data or $ADVBN_DATA")
    parser.add_argument("--output", default=None, help="results folder (default recipes/cifar10/results; with "
                        "--tiny runs/cifar10-tiny, untracked; pacs: recipes/pacs/results/<task>, "
                        "runs/pacs-tiny/<task>)")
    parser.add_argument("--runs-dir", default=None, help="runs folder (default recipes/cifar10/runs; with --tiny "
                        "runs/cifar10-tiny/runs; pacs: recipes/pacs/runs/<task>, runs/pacs-tiny/<task>/runs)")
    parser.add_argument("--eval-images", type=int, default=None, help="test images corrupted for CIFAR-10-C")
    parser.add_argument("--corruptions", default=None, help="comma list, 'all' (19) or 'benchmark' (15)")
    parser.add_argument("--severities", nargs="+", type=int, default=None)
    parser.add_argument("--clean-test-images", type=int, default=None, help="JPEG test images for clean accuracy")
    parser.add_argument("--lossless-images", type=int, default=None, help="images of test_lossless for the "
                        "JPEG-vs-lossless gap (default: all 1,000)")
    parser.add_argument("--tta-images", type=int, default=None, help="images of the corruption subset evaluated with "
                        "test-time BatchNorm adaptation (default 250)")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    parser.add_argument("--no-amp", action="store_true", help="disable AMP (float16 autocast) on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--cache-dir", default=None, help="corruption cache (default ~/.cache/advbn_aug/corruptions)")
    parser.add_argument("--force", action="store_true", help="redo finished runs")
    parser.add_argument("--workers", type=int, default=None, help="processes sharing the runs folder (the "
                        f"corruption cache is built first on every core; default 1, {GPU_WORKERS} with --preset gpu)")
    parser.add_argument("--collect", action="store_true", help="run nothing: rewrite the table from finished runs")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    from advbn_aug.config import UNSET, add_config_arguments
    from advbn_aug.feature.config import AdvBNConfig

    add_train_arguments(parser)
    group = parser.add_argument_group("AdvBN", "settings of the AdvBN arms (the recipe's advbn; the prefix up to "
                                      "the layer is always frozen)")
    add_config_arguments(group, AdvBNConfig, prefix="advbn-", exclude=("freeze_prefix",), defaults=UNSET)
    add_pacs_arguments(parser)


def default_folders(tiny: bool, preset: str = "full") -> tuple[Path, Path]:
    """``(output, runs_dir)`` when no flag names them: the committed table's folders for the full recipe
    (``recipes/cifar10/results/short`` for the short preset); for ``--tiny`` (the README's smoke run) folders under
    ``runs/`` that git ignores, so it never touches tracked files."""
    if tiny or preset == "tiny":
        return Path("runs/cifar10-tiny"), Path("runs/cifar10-tiny/runs")
    if preset == "gpu":  # the GPU table: folders of its own, never the CPU table's
        return Path("recipes/cifar10/results_gpu"), Path("runs/cifar10-gpu")
    if preset == "short":
        return Path("recipes/cifar10/results/short"), Path("recipes/cifar10/runs/short")
    return Path("recipes/cifar10/results"), Path("recipes/cifar10/runs")


def config_from_args(args: argparse.Namespace) -> RecipeConfig | PACSConfig:
    from advbn_aug.config import config_from_args as advbn_from_args
    from advbn_aug.config import config_values
    from advbn_aug.feature.config import AdvBNConfig

    advbn = config_values(args, AdvBNConfig, prefix="advbn-")  # only the flags given
    if getattr(args, "benchmark", "cifar10") == "pacs":
        if advbn:
            base = PACS_PRESETS["tiny" if args.tiny else "full"].advbn
            advbn_from_args(args, AdvBNConfig, prefix="advbn-", base=AdvBNConfig.from_dict(dict(base)))
        return pacs_config_from_args(args, advbn)
    pacs_only = [f for f in ("protocol", "domain", "img_size", "test_images", "ema_decay")
                 if getattr(args, f, None) is not None]
    if pacs_only:
        from advbn_aug.config import ConfigArgumentError

        raise ConfigArgumentError(f"--{pacs_only[0].replace('_', '-')} is a flag of the PACS recipe")
    if args.tiny and args.preset not in (None, "tiny"):
        from advbn_aug.config import ConfigArgumentError

        raise ConfigArgumentError(f"--tiny and --preset {args.preset} contradict each other: pass one")
    if args.preset not in (None, *PRESETS):
        from advbn_aug.config import ConfigArgumentError

        raise ConfigArgumentError(f"--preset {args.preset} is a preset of the PACS recipe; the CIFAR-10 recipe has "
                                  f"{list(PRESETS)}")
    base = TINY if args.tiny else PRESETS[args.preset or "full"]
    if args.config:
        if not Path(args.config).is_file():
            raise FileNotFoundError(f"--config {args.config} does not exist")
        base = RecipeConfig.from_yaml(Path(args.config))
    if advbn:
        advbn_from_args(args, AdvBNConfig, prefix="advbn-", base=AdvBNConfig.from_dict(dict(base.advbn)))
    corruptions = args.corruptions
    if corruptions is not None and corruptions not in ("all", "benchmark"):
        corruptions = [c.strip() for c in corruptions.split(",") if c.strip()]
    return base.with_overrides(**train_overrides(args), model=args.model, advbn=advbn or None,
                               eval_images=args.eval_images, corruptions=corruptions, severities=args.severities,
                               clean_test_images=args.clean_test_images, lossless_images=args.lossless_images,
                               tta_images=args.tta_images)


# printed under the --tiny table, which a newcomer would otherwise read as results
_SMOKE_NOTE = {
    name: f"These numbers are a smoke test (a few training steps on a few images): they show that the pipeline runs "
          f"and mean nothing about robustness. The committed tables are in recipes/{name}/README.md and "
          f"recipes/{name}/results/." for name in ("cifar10", "pacs")}


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "imagenet":
        print("The ImageNet recipe needs ImageNet and GPUs: see recipes/imagenet/README.md for its commands "
              "(advbn-aug train).", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    if isinstance(cfg, PACSConfig):
        if args.workers is not None:
            from advbn_aug.config import ConfigArgumentError

            raise ConfigArgumentError("--workers is a flag of the CIFAR-10 recipe")
        default_output, default_runs = pacs_default_folders(args.tiny or args.preset == "tiny", cfg)
    else:
        from advbn_aug.eval.corruptions import resolve_corruptions

        resolve_corruptions(cfg.corruptions)  # fail early on a bad name
        default_output, default_runs = default_folders(args.tiny, args.preset or "full")
    gpu = args.preset == "gpu" and not isinstance(cfg, PACSConfig)
    workers = args.workers if args.workers is not None else GPU_WORKERS if gpu else 1
    device = args.device or ("cuda" if gpu else None)  # the GPU table runs on CPU only when asked (--device cpu)
    output = Path(args.output or default_output)
    runs_dir = Path(args.runs_dir or default_runs)
    command = "advbn-aug recipe " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "recipe" else "advbn-aug recipe (library call)"
    line = f"{_dt.datetime.now().isoformat(timespec='seconds')} cwd={os.getcwd()} {command}\n"
    history_path = output / "logs" / "commands.log"
    history = (history_path.read_text() if history_path.is_file() else "") + line
    commands = list(dict.fromkeys(h.split(" ", 2)[-1] for h in history.splitlines() if h.strip()))
    handlers: list[logging.Handler] = []

    def start() -> None:
        """Once run_recipe has accepted the command (arms, device, data): the run log, the command, the config."""
        history_path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(output / "logs" / "recipe.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        handlers.append(handler)
        with open(history_path, "a") as f:
            f.write(line)
        (output / "config.yaml").write_text(cfg.to_yaml())

    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    handlers.append(console)
    log.setLevel(logging.INFO)
    # the command prints through its own handler: a root handler set up by someone else (timm's
    # setup_default_logging, logging.basicConfig) would print every line twice, or write to a stream closed since
    propagate, log.propagate = log.propagate, False
    try:
        t0 = time.perf_counter()
        doc = run_recipe(cfg, output=output, runs_dir=runs_dir, data_dir=args.data_dir, arms_dir=args.arms_dir,
                         device=device, amp=not args.no_amp, cache_dir=args.cache_dir,
                         progress=not args.no_progress, force=args.force, commands=commands,
                         collect_only=args.collect, on_start=start, workers=workers)
        print(benchmark_of(cfg).short_table(doc))
        print(f"results: {output / 'results.md'} ({time.perf_counter() - t0:.0f}s)")
        if args.tiny or args.preset == "tiny":
            print(_SMOKE_NOTE[benchmark_of(cfg).name])
    except CheckpointError as err:  # a corrupt file of a run folder: the message names it and the remedy
        print(f"advbn-aug recipe: error: {err}", file=sys.stderr)
        return 2
    except WorkerError as err:  # the table of the finished runs is written; the message says how to finish
        print(f"advbn-aug recipe: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM while workers run: they are stopped and the table written
        print(f"advbn-aug recipe: stopped; {output / 'results.md'} holds the runs finished so far; rerun the same "
              "command to finish the others (a stopped run resumes from its last checkpoint)", file=sys.stderr)
        return 130
    finally:
        log.propagate = propagate
        for h in handlers:
            log.removeHandler(h)
            h.close()
    return 0
