"""Self-contained AdvBN trainer built from timm's public functions (for users without a timm checkout).

Single process::

    advbn-aug train --data-dir /data/imagenet --model resnet50 --pretrained \\
        --lr 1e-3 --epochs 20 -b 256 --amp --advbn-layer layer1

Multi-process (one per GPU; gloo on CPU)::

    torchrun --nproc_per_node 8 -m advbn_aug.integrations.timm.trainer --data-dir /data/imagenet --model resnet50 ...

Pieces: ``create_model``, ``create_dataset`` + ``AugMixDataset`` + ``create_loader`` (``--aug-splits``, prefetcher),
``JsdCrossEntropy`` (``--jsd-loss``), ``create_optimizer_v2``, ``create_scheduler_v2``, ``ModelEmaV3`` (via the task),
``NativeScaler``, ``CheckpointSaver`` and ``resume_task_checkpoint``; each step is ``AdvBNTask(input, target)``.
Checkpoints (``<output>/<experiment>/last.pth.tar``, ``checkpoint-N.pth.tar``, ``model_best.pth.tar``) hold plain timm
weights under ``state_dict`` (and ``state_dict_ema``); the adversarial BN copies are kept under
``task_state['advbn_aux']`` so ``--resume`` continues exactly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from functools import partial
from typing import Any

import torch
from torch import nn

from advbn_aug.config import ConfigArgumentError
from advbn_aug.integrations.timm.settings import add_advbn_args, check_timm_args, settings_from_args
from advbn_aug.integrations.timm.task import AdvBNTask

_logger = logging.getLogger("advbn_timm_trainer")

__all__ = ["add_arguments", "build_parser", "check_args", "parse_args", "train", "run", "main"]

DESCRIPTION = "AdvBN training with timm (self-contained)"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The trainer's parser (see :func:`add_arguments`)."""
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """timm-style flags (a subset of timm's train.py names) plus the ``--advbn-*`` group."""
    g = p.add_argument_group("Dataset parameters")
    g.add_argument("--data-dir", metavar="DIR", required=True, help="dataset root (ImageFolder: DIR/train/CLASS/*)")
    g.add_argument("--dataset", "-d", default="", metavar="NAME", help="timm dataset name (default: folder)")
    g.add_argument("--train-split", default="train", metavar="NAME", help="train split (default: train)")
    g.add_argument("--val-split", default="validation", metavar="NAME",
                   help="validation split, evaluated each epoch if present (default: validation)")
    g = p.add_argument_group("Model parameters")
    g.add_argument("--model", default="resnet50", metavar="MODEL", help="timm model name (default: resnet50)")
    g.add_argument("--pretrained", action="store_true", default=False, help="start from pretrained weights")
    g.add_argument("--initial-checkpoint", default="", metavar="PATH", help="initialise the model from a checkpoint")
    g.add_argument("--num-classes", type=int, default=None, metavar="N", help="number of classes (model default)")
    g.add_argument("--img-size", type=int, default=None, metavar="N", help="image size (model default)")
    g.add_argument("--mean", type=float, nargs="+", default=None, metavar="MEAN", help="override dataset mean")
    g.add_argument("--std", type=float, nargs="+", default=None, metavar="STD", help="override dataset std")
    g.add_argument("-b", "--batch-size", type=int, default=128, metavar="N", help="batch size per process")
    g.add_argument("--channels-last", action="store_true", default=False, help="use channels_last memory layout")
    g.add_argument("--torchcompile", nargs="?", type=str, default=None, const="inductor",
                   help="torch.compile the model with this backend (default backend: inductor)")
    g = p.add_argument_group("Optimizer and schedule parameters")
    g.add_argument("--opt", default="sgd", metavar="OPTIMIZER", help="optimizer (default: sgd)")
    g.add_argument("--lr", type=float, default=0.05, metavar="LR", help="learning rate (default: 0.05)")
    g.add_argument("--momentum", type=float, default=0.9, metavar="M", help="optimizer momentum (default: 0.9)")
    g.add_argument("--weight-decay", type=float, default=2e-5, help="weight decay (default: 2e-5)")
    g.add_argument("--clip-grad", type=float, default=None, metavar="NORM", help="clip gradient norm")
    g.add_argument("--sched", default="cosine", metavar="SCHEDULER", help="lr scheduler (default: cosine)")
    g.add_argument("--epochs", type=int, default=300, metavar="N", help="epochs to train (default: 300)")
    g.add_argument("--decay-epochs", type=float, default=90, metavar="N",
                   help="epoch interval to decay the lr (step schedulers, default: 90)")
    g.add_argument("--decay-rate", "--dr", type=float, default=0.1, metavar="RATE",
                   help="lr decay rate (default: 0.1)")
    g.add_argument("--warmup-epochs", type=int, default=0, metavar="N", help="lr warm-up epochs (default: 0)")
    g.add_argument("--warmup-lr", type=float, default=1e-5, metavar="LR", help="warm-up lr (default: 1e-5)")
    g.add_argument("--min-lr", type=float, default=0.0, metavar="LR", help="lower lr bound (default: 0)")
    g = p.add_argument_group("Augmentation and regularization parameters")
    g.add_argument("--no-aug", action="store_true", default=False, help="disable training augmentation")
    g.add_argument("--aa", default=None, metavar="NAME",
                   help="auto-augment policy; with --aug-splits defaults to AugMix 'augmix-m3-w3'")
    g.add_argument("--aug-splits", type=int, default=0, help="augmentation splits (0 or >= 2; AugMix: 3)")
    g.add_argument("--jsd-loss", action="store_true", default=False, help="JSD + CE loss (use with --aug-splits)")
    g.add_argument("--reprob", type=float, default=0.0, metavar="PCT", help="random erase probability")
    g.add_argument("--resplit", action="store_true", default=False, help="no random erasing on the clean split")
    g.add_argument("--smoothing", type=float, default=0.1, help="label smoothing (default: 0.1)")
    g.add_argument("--drop-path", type=float, default=None, metavar="PCT", help="drop path rate")
    g = p.add_argument_group("Miscellaneous parameters")
    g.add_argument("--amp", action="store_true", default=False, help="mixed precision (autocast)")
    g.add_argument("--amp-dtype", default="float16", choices=("float16", "bfloat16"), help="autocast dtype")
    g.add_argument("--model-ema", action="store_true", default=False, help="keep an EMA of the weights")
    g.add_argument("--model-ema-decay", type=float, default=0.9998, help="EMA decay (default: 0.9998)")
    g.add_argument("--resume", default="", metavar="PATH", help="resume model, AdvBN, optimizer and epoch")
    g.add_argument("--no-resume-opt", action="store_true", default=False, help="do not resume the optimizer")
    g.add_argument("--start-epoch", type=int, default=None, metavar="N", help="override the start epoch")
    g.add_argument("--output", default="./output/train", metavar="DIR", help="output folder (default: ./output/train)")
    g.add_argument("--experiment", default="", metavar="NAME", help="sub-folder name (default: date-model-size)")
    g.add_argument("--checkpoint-hist", type=int, default=3, metavar="N", help="checkpoints kept (default: 3)")
    g.add_argument("-j", "--workers", type=int, default=4, metavar="N", help="data loading workers (default: 4)")
    g.add_argument("--seed", type=int, default=42, metavar="S", help="random seed (default: 42)")
    g.add_argument("--device", default="cuda", help="device (cuda, cpu, ...; default: cuda)")
    g.add_argument("--dist-bn", default="reduce", choices=("reduce", "broadcast", ""),
                   help="sync BatchNorm statistics across processes at epoch end (default: reduce)")
    g.add_argument("--log-interval", type=int, default=50, metavar="N", help="batches between log lines")
    add_advbn_args(p)


def check_args(args: argparse.Namespace) -> None:
    """Validate parsed flags; raises :class:`~advbn_aug.config.ConfigArgumentError` naming the problem."""
    if args.aug_splits == 1 or args.aug_splits < 0:
        raise ConfigArgumentError(f"--aug-splits must be 0 or >= 2, got {args.aug_splits}")
    if args.jsd_loss and args.aug_splits < 2:
        raise ConfigArgumentError("--jsd-loss needs --aug-splits >= 2 (e.g. --aug-splits 3 for AugMix)")
    if args.resume and not os.path.isfile(args.resume):
        raise ConfigArgumentError(f"--resume checkpoint not found: {args.resume}")
    if not os.path.isdir(args.data_dir):
        raise ConfigArgumentError(f"--data-dir is not a directory: {args.data_dir}")
    try:
        check_timm_args(args, settings_from_args(args))
    except (ValueError, OSError) as e:
        raise ConfigArgumentError(str(e)) from e


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate the flags (``argparse`` errors exit with status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
    except ConfigArgumentError as e:
        parser.error(str(e))
    return args


def _criterion(args: argparse.Namespace) -> nn.Module:
    from timm.loss import JsdCrossEntropy, LabelSmoothingCrossEntropy

    if args.jsd_loss:
        return JsdCrossEntropy(num_splits=args.aug_splits, smoothing=args.smoothing)
    if args.smoothing:
        return LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    return nn.CrossEntropyLoss()


def _loader(args: argparse.Namespace, data_config: dict[str, Any], device: torch.device, split: str,
            training: bool) -> Any:
    from timm.data import AugMixDataset, create_dataset, create_loader

    dataset = create_dataset(args.dataset, root=args.data_dir, split=split, is_training=training,
                             batch_size=args.batch_size, seed=args.seed)
    splits = args.aug_splits if training else 0
    if splits > 1:
        dataset = AugMixDataset(dataset, num_splits=splits)
    aa = args.aa or ("augmix-m3-w3" if splits > 1 else None)
    return create_loader(dataset, input_size=data_config["input_size"], batch_size=args.batch_size,
                         is_training=training, no_aug=args.no_aug, re_prob=args.reprob if training else 0.0,
                         re_split=args.resplit, auto_augment=aa if training else None, num_aug_splits=splits,
                         interpolation=data_config["interpolation"], mean=data_config["mean"],
                         std=data_config["std"], num_workers=args.workers, distributed=args.distributed,
                         crop_pct=data_config["crop_pct"], pin_memory=device.type == "cuda", device=device,
                         use_prefetcher=True, persistent_workers=False)


def _split_exists(args: argparse.Namespace, split: str) -> bool:
    return bool(split) and not args.dataset and os.path.isdir(os.path.join(args.data_dir, split))


@torch.no_grad()
def _validate(model: nn.Module, loader: Any, autocast: Any, args: argparse.Namespace) -> float:
    """Top-1 accuracy (%) over ``loader``, averaged over processes."""
    model.eval()
    correct = torch.zeros((), dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for images, targets in loader:
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            out = model(images)
        correct += (out.argmax(-1) == targets).sum().cpu().double()
        total += targets.numel()
    if args.distributed:
        buf = torch.stack([correct, total]).to(args.device)
        torch.distributed.all_reduce(buf)
        correct, total = buf[0].cpu(), buf[1].cpu()
    return float(100.0 * correct / total.clamp(min=1))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse ``argv`` and train (see :func:`train`)."""
    return train(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """``advbn-aug train``: validate the parsed flags and train."""
    check_args(args)
    train(args)
    return 0


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train; returns ``{'epoch': last epoch, 'output_dir': ..., 'metric': last top-1 or None, 'task': the task}``."""
    from timm import utils
    from timm.data import resolve_data_config
    from timm.models import create_model, load_checkpoint, safe_model_name
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.task import load_task_ema_checkpoint, resume_task_checkpoint

    utils.setup_default_logging()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available: pass --device cpu")
    device = utils.init_distributed_device(args)
    primary = utils.is_primary(args)
    if args.distributed:
        _logger.info(f"process {args.rank} of {args.world_size} on {device}")
    utils.random_seed(args.seed, args.rank)

    settings = settings_from_args(args)
    model = create_model(args.model, pretrained=args.pretrained, num_classes=args.num_classes,
                         drop_path_rate=args.drop_path)
    if args.initial_checkpoint:
        load_checkpoint(model, args.initial_checkpoint)
    if args.num_classes is None:
        args.num_classes = model.num_classes
    data_config = resolve_data_config(vars(args), model=model, verbose=primary)
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)

    amp_dtype = torch.bfloat16 if args.amp_dtype == "bfloat16" else torch.float16
    autocast = partial(torch.autocast, device_type=device.type, dtype=amp_dtype) if args.amp else nullcontext
    loss_scaler = utils.NativeScaler(device=device.type) if args.amp and amp_dtype == torch.float16 \
        and device.type == "cuda" else None

    task = AdvBNTask(model, _criterion(args), device=device, verbose=primary, settings=settings)
    if primary:
        _logger.info(f"AdvBN: {task.advbn or task.policy or 'off'}")
    optimizer = create_optimizer_v2(task.get_trainable_module(), opt=args.opt, lr=args.lr,
                                    weight_decay=args.weight_decay, momentum=args.momentum)
    task.watch_optimizer(optimizer)

    start_epoch = 0
    if args.resume:
        resumed = resume_task_checkpoint(task, args.resume, optimizer=None if args.no_resume_opt else optimizer,
                                         loss_scaler=loss_scaler, log_info=primary)
        start_epoch = resumed or 0
    if args.start_epoch is not None:
        start_epoch = args.start_epoch
    if args.model_ema:
        task.setup_ema(decay=args.model_ema_decay)
        if args.resume:
            load_task_ema_checkpoint(task, args.resume)
    if args.torchcompile:
        task.compile(backend=args.torchcompile)
        task.compile_ema(backend=args.torchcompile)
    if args.distributed:
        task.prepare_distributed(device_ids=[device])  # as timm's train.py; dropped on CPU

    loader_train = _loader(args, data_config, device, args.train_split, True)
    loader_eval = _loader(args, data_config, device, args.val_split, False) \
        if _split_exists(args, args.val_split) else None
    updates_per_epoch = len(loader_train)
    scheduler, num_epochs = create_scheduler_v2(optimizer, sched=args.sched, num_epochs=args.epochs,
                                                decay_epochs=args.decay_epochs, decay_rate=args.decay_rate,
                                                warmup_epochs=args.warmup_epochs, warmup_lr=args.warmup_lr,
                                                min_lr=args.min_lr, updates_per_epoch=updates_per_epoch)
    if scheduler is not None and start_epoch > 0:
        scheduler.step(start_epoch)

    saver = None
    output_dir = ""
    if primary:
        exp = args.experiment or "-".join([datetime.now().strftime("%Y%m%d-%H%M%S"),
                                           safe_model_name(args.model), str(data_config["input_size"][-1])])
        output_dir = utils.get_outdir(args.output, exp, inc=False)
        saver = _checkpoint_saver(task, optimizer, args, loss_scaler, output_dir)
        if args.resume and os.path.dirname(os.path.abspath(args.resume)) == os.path.abspath(output_dir):
            saver.load_state_dict_from_checkpoint(args.resume)

    metric = None
    epoch = start_epoch - 1
    for epoch in range(start_epoch, num_epochs):
        if hasattr(loader_train.sampler, "set_epoch"):
            loader_train.sampler.set_epoch(epoch)
        task.set_epoch(epoch)
        _train_one_epoch(epoch, task, loader_train, optimizer, scheduler, loss_scaler, autocast, args,
                         updates_per_epoch, primary)
        if args.distributed and args.dist_bn:
            utils.distribute_bn(task.get_trainable_module(), args.world_size, args.dist_bn == "reduce")
        if loader_eval is not None:
            metric = _validate(task.get_eval_model(), loader_eval, autocast, args)
            if task.has_ema():
                if args.distributed and args.dist_bn:
                    utils.distribute_bn(task.get_trainable_module(ema=True), args.world_size,
                                        args.dist_bn == "reduce")
                metric = _validate(task.get_eval_model(ema=True), loader_eval, autocast, args)
            if primary:
                _logger.info(f"epoch {epoch}: top-1 {metric:.2f}{' (EMA)' if task.has_ema() else ''}")
        if scheduler is not None:
            scheduler.step(epoch + 1, metric)
        if saver is not None:
            saver.save_checkpoint(epoch, metric=metric)
    if args.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {"epoch": epoch, "output_dir": output_dir, "metric": metric, "task": task}


def _checkpoint_saver(task: AdvBNTask, optimizer: torch.optim.Optimizer, args: argparse.Namespace,
                      loss_scaler: Any, output_dir: str) -> Any:
    """timm's ``CheckpointSaver`` writing through the task (plain ``state_dict`` + ``task_state``)."""
    from timm.utils import CheckpointSaver

    return CheckpointSaver(model=task.get_trainable_module(), optimizer=optimizer, args=args, amp_scaler=loss_scaler,
                           checkpoint_dir=output_dir, recovery_dir=output_dir, decreasing=False,
                           max_history=args.checkpoint_hist, task=task)


def _train_one_epoch(epoch: int, task: AdvBNTask, loader: Any, optimizer: torch.optim.Optimizer, scheduler: Any,
                     loss_scaler: Any, autocast: Any, args: argparse.Namespace, updates_per_epoch: int,
                     primary: bool) -> None:
    task.train()
    num_updates = epoch * updates_per_epoch
    start = time.time()
    for i, (images, targets) in enumerate(loader):
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            result = task(images, targets)
        loss = result["loss"]
        optimizer.zero_grad(set_to_none=True)
        if loss_scaler is not None:
            loss_scaler(loss, optimizer, clip_grad=args.clip_grad, parameters=task.get_clip_parameters())
        else:
            loss.backward()
            if args.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(task.get_clip_parameters(), args.clip_grad)
            optimizer.step()
        num_updates += 1
        task.update_ema(num_updates)
        if scheduler is not None:
            scheduler.step_update(num_updates=num_updates)
        if primary and (i % args.log_interval == 0 or i == updates_per_epoch - 1):
            parts = [f"{k} {v.item():.4f}" for k, v in result.items()
                     if k.startswith("loss") and isinstance(v, torch.Tensor) and v.dim() == 0]
            lr = optimizer.param_groups[0]["lr"]
            _logger.info(f"train epoch {epoch} [{i + 1}/{updates_per_epoch}] {' '.join(parts)} lr {lr:.3g} "
                         f"({time.time() - start:.1f}s)")


if __name__ == "__main__":
    main(sys.argv[1:])
