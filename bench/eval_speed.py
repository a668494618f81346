"""Evaluation throughput of the recipe's model path: images/s of ``predict`` on the CIFAR ResNet, side by side.

Variants, measured interleaved in one run on the same uint8 test images (the recipe's evaluation is ~202k such
forward passes per model):

- ``plain``: the model as trained (BatchNorm modules, NCHW weights);
- ``folded``: BatchNorm folded into the convolutions, NCHW weights (the recipe's path before ``channels_last``);
- ``folded_cl``: folded, weights in ``channels_last`` (``fuse_for_eval`` today). The batches ``prepare_batch`` makes
  from NHWC uint8 images are channels_last already, so this removes the layout conversions around every conv;
- ``folded_cl_2t``: the same with 2 threads (what a machine with a free second core gives on top).

It also checks that the variants predict the same classes (on clean and one corrupted set), since the recipe's
results must not depend on the speed-up.

    python bench/eval_speed.py                      # ResNet-20, 2,000 test images, batch 100, 5 rounds
    python bench/eval_speed.py --model resnet56 --images 1000
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from advbn_aug.datasets.cifar10 import load_cifar10
from advbn_aug.eval import predict
from advbn_aug.eval.corruptions import corrupt
from advbn_aug.models.cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD, load_pretrained_cifar_resnet
from advbn_aug.recipe.cifar10.evaluate import fuse_for_eval


def _variants(model: nn.Module) -> dict[str, tuple[nn.Module, int]]:
    folded_cl = fuse_for_eval(model)
    folded = copy.deepcopy(folded_cl).to(memory_format=torch.contiguous_format)
    return {"plain": (model, 1), "folded": (folded, 1), "folded_cl": (folded_cl, 1), "folded_cl_2t": (folded_cl, 2)}


def _timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20", choices=("resnet20", "resnet56"))
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("-b", "--batch-size", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    model = load_pretrained_cifar_resnet(int(args.model.removeprefix("resnet"))).eval()
    x, y = load_cifar10("test")
    x, y = x[:args.images], y[:args.images]
    fog = corrupt(x, "fog", 3, seed=0)
    variants = _variants(model)
    run = dict(batch_size=args.batch_size, device="cpu", mean=CIFAR_RESNET_MEAN, std=CIFAR_RESNET_STD)

    preds: dict[str, list[np.ndarray]] = {}
    for name, (m, threads) in variants.items():  # warm-up + the predictions compared below
        torch.set_num_threads(threads)
        preds[name] = [predict(m, x, **run)[0], predict(m, fog, **run)[0]]
    times: dict[str, list[float]] = {n: [] for n in variants}
    for _ in range(args.rounds):
        for name, (m, threads) in variants.items():
            torch.set_num_threads(threads)
            dt, _ = _timed(lambda m=m: predict(m, x, **run)[0])
            times[name].append(dt)
    torch.set_num_threads(1)

    base = statistics.median(times["folded"])
    print(f"# Evaluation throughput: {args.model}, {args.images} CIFAR-10 test images, batch {args.batch_size}, "
          f"median of {args.rounds} interleaved rounds")
    print(f"\ntorch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} thread(s) by default\n")
    print("| variant | threads | images/s | speed vs folded (the old recipe path) | speed vs plain | "
          "same predictions as plain (clean / fog s3) | accuracy (clean) |")
    print("|---|---|---|---|---|---|---|")
    for name, (_, threads) in variants.items():
        med = statistics.median(times[name])
        same = [float((a == b).mean()) for a, b in zip(preds[name], preds["plain"])]
        acc = float((preds[name][0] == y).mean())
        print(f"| {name} | {threads} | {args.images / med:.0f} | {base / med:.2f}x | "
              f"{statistics.median(times['plain']) / med:.2f}x | {same[0]:.4f} / {same[1]:.4f} | {100 * acc:.2f} |")


if __name__ == "__main__":
    main()
