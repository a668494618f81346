"""Time per training step: standard fine-tuning vs AdvBN through the plugin (fx and hook paths) vs a hand-split model.

The fx path is measured twice: keeping the layer output by reference with a version check (``capture="check"``, the
default) and keeping a private copy (``capture="copy"``); the copy also costs one feature of memory, printed below.

The hand-split model is the ideal cost: prefix and suffix written out by hand, the adversarial BatchNorms living in a
second suffix that shares every non-BN parameter with the clean one. All arms train the same parameters (the suffix)
and are measured interleaved in one run; the table reports medians and ratios to the hand-split cost.

    python bench/step_cost.py                       # CIFAR ResNet-20, batch 128, 32 px
    python bench/step_cost.py --model resnet18 --img-size 64 --batch-size 32
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from advbn_aug import attach, cifar_resnet

_BN = nn.modules.batchnorm._BatchNorm


def _build(name: str) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(model, prefix module, suffix module) where suffix(prefix(x)) == model(x)."""
    if name.startswith("cifar_resnet"):
        m = cifar_resnet(int(name.removeprefix("cifar_resnet")))
        prefix = nn.Sequential(m.conv1, m.bn1, m.relu, m.layer1)
        suffix = nn.Sequential(m.layer2, m.layer3, nn.AdaptiveAvgPool2d(1), nn.Flatten(), m.linear)
    elif name in ("resnet18", "resnet50"):
        m = getattr(torchvision.models, name)(num_classes=10)
        prefix = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1)
        suffix = nn.Sequential(m.layer2, m.layer3, m.layer4, m.avgpool, nn.Flatten(), m.fc)
    else:
        raise SystemExit(f"unknown --model {name!r}: use cifar_resnet20, cifar_resnet56, resnet18 or resnet50")
    return m, prefix, suffix


def _shared_adv_copy(suffix: nn.Module) -> nn.Module:
    """A copy of ``suffix`` with its own BatchNorms and every other parameter shared."""
    adv = copy.deepcopy(suffix)
    for (_, a), (_, c) in zip(adv.named_modules(), suffix.named_modules()):
        if isinstance(a, _BN):
            continue
        for pname, p in list(c.named_parameters(recurse=False)):
            setattr(a, pname, p)
    return adv


class _HandSplit:
    """AdvBN written out by hand for one architecture: the ideal cost of the algorithm."""

    def __init__(self, prefix: nn.Module, suffix: nn.Module, eps=1.1, step_size=0.2, steps=6):
        self.prefix, self.suffix, self.adv = prefix, suffix, _shared_adv_copy(suffix)
        self.eps, self.step_size, self.steps = eps, step_size, steps
        for p in prefix.parameters():
            p.requires_grad_(False)

    def params(self):
        seen = {}
        for p in list(self.suffix.parameters()) + list(self.adv.parameters()):
            seen[id(p)] = p
        return list(seen.values())

    def loss(self, x, y):
        self.prefix.eval()
        with torch.no_grad():
            f = self.prefix(x)
        self.suffix.train()
        clean = F.cross_entropy(self.suffix(f), y)
        mu = f.mean((0, 2, 3), keepdim=True)
        m = torch.ones_like(mu)
        s = torch.ones_like(mu)
        self.adv.eval()
        for _ in range(self.steps):
            m.requires_grad_(True)
            s.requires_grad_(True)
            loss = F.cross_entropy(self.adv(((f - mu) * s + mu * m).clamp_min(0)), y)
            gm, gs = torch.autograd.grad(loss, (m, s))
            with torch.no_grad():
                m = (m + self.step_size * gm.sign()).clamp(1 - self.eps, 1 + self.eps)
                s = (s + self.step_size * gs.sign()).clamp(1 - self.eps, 1 + self.eps)
        self.adv.train()
        f_adv = ((f - mu) * s + mu * m).clamp_min(0)
        return clean + F.cross_entropy(self.adv(f_adv), y)


def _arms(name: str, device: torch.device):
    torch.manual_seed(0)
    arms = {}
    model, prefix, suffix = _build(name)
    for p in prefix.parameters():
        p.requires_grad_(False)
    model.to(device).train()

    def standard(x, y, model=model, prefix=prefix):
        prefix.eval()
        return F.cross_entropy(model(x), y)
    arms["standard fine-tuning"] = (standard, [p for p in model.parameters() if p.requires_grad])

    for split, capture in (("fx", "check"), ("fx", "copy"), ("hook", "check")):
        m, _, _ = _build(name)
        adv = attach(m.to(device), "layer1", split=split, capture=capture)
        m.train()
        label = f"AdvBN plugin ({split} path" + (", capture='copy')" if capture == "copy" else ")")
        arms[label] = (adv.loss, [p for p in m.parameters() if p.requires_grad])

    m, prefix, suffix = _build(name)
    m.to(device)
    hand = _HandSplit(prefix, suffix)
    hand.adv.to(device)
    arms["AdvBN hand-split (ideal)"] = (hand.loss, hand.params())
    return arms


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cifar_resnet20")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per arm per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier on a shared machine)")
    ap.add_argument("--timer", choices=("auto", "wall", "process"), default="auto",
                    help="process CPU time (auto on CPU: insensitive to other load) or wall clock (auto on CUDA)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    timer = args.timer if args.timer != "auto" else ("process" if device.type == "cpu" else "wall")
    clock = time.process_time if timer == "process" else time.perf_counter
    arms = _arms(args.model, device)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    opts = {k: torch.optim.SGD(params, lr=1e-3, momentum=0.9) for k, (_, params) in arms.items()}

    def run(name, n):
        fn, _ = arms[name]
        opt = opts[name]
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            fn(x, y).backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for name in arms:
        run(name, args.warmup)
    times: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(args.rounds):
        for name in arms:
            t0 = clock()
            run(name, args.steps)
            times[name].append((clock() - t0) / args.steps * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    ideal = med["AdvBN hand-split (ideal)"]
    print(f"model={args.model} batch={args.batch_size} img={args.img_size} device={device} "
          f"threads={torch.get_num_threads()} timer={timer} rounds={args.rounds}x{args.steps} steps (medians)")
    print("| arm | ms/step | vs hand-split |\n|---|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.1f} | {v / ideal:.3f}x |")
    _, prefix, _ = _build(args.model)
    with torch.no_grad():
        feature = prefix.eval()(x.cpu()[:1])
    mib = feature.numel() * feature.element_size() * args.batch_size / 2**20
    print(f"capture='copy' keeps one extra layer1 feature: {mib:.1f} MiB at this batch (float32)")


if __name__ == "__main__":
    main()
