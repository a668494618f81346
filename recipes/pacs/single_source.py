"""PACS single-source (photo -> art painting, cartoon, sketch) with an ImageNet-pretrained EfficientNet-Lite0.

A first, compact version of the PACS recipe (issue 13): standard fine-tuning vs AdvBN (the paper's attack settings,
after ``--layer``), both with the same frozen prefix, the same batches per seed, and the same budget; AdvBN models are
evaluated through both BatchNorm routes (clean; adversarial, the paper's protocol for style shifts). Each (arm, seed)
writes ``<output>/runs/<arm>_seed<k>.json`` (skipped when present, so reruns only add what is missing) and the table
``<output>/README.md`` collects paired differences by seed with 95 % t-intervals.

    python recipes/pacs/single_source.py --seeds 0 1 2                  # the committed table
    python recipes/pacs/single_source.py --tiny --output runs/pacs-tiny  # a smoke run (a few dozen images)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from advbn_aug import AdvBN, load_efficientnet_lite, pacs_single_source

_NORM = transforms.Normalize([0.5] * 3, [0.5] * 3)  # the Lite checkpoints' input normalisation


def _loaders(args: argparse.Namespace, seed: int) -> tuple[DataLoader, dict[str, DataLoader]]:
    train, targets = pacs_single_source(args.source, args.data_dir)
    train.transform = transforms.Compose([transforms.RandomResizedCrop(args.img_size, scale=(0.7, 1.0)),
                                          transforms.RandomHorizontalFlip(), transforms.ToTensor(), _NORM])
    test_tf = transforms.Compose([transforms.Resize(args.img_size), transforms.ToTensor(), _NORM])
    for d in targets.values():
        d.transform = test_tf
    if args.tiny:
        g = np.random.default_rng(0)
        train = Subset(train, g.choice(len(train), 48, replace=False).tolist())
        targets = {k: Subset(d, g.choice(len(d), 32, replace=False).tolist()) for k, d in targets.items()}
    gen = torch.Generator().manual_seed(seed)
    tl = DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=gen, drop_last=True, num_workers=0)
    return tl, {k: DataLoader(d, batch_size=100, num_workers=0) for k, d in targets.items()}


@torch.no_grad()
def _accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    hit = n = 0
    for x, y in loader:
        hit += (model(x).argmax(1) == y).sum().item()
        n += len(y)
    return hit / n


def run_one(args: argparse.Namespace, arm: str, seed: int) -> dict:
    torch.manual_seed(seed)
    model = load_efficientnet_lite("lite0", num_classes=7)
    adv = AdvBN(args.layer, steps=6 if arm == "advbn" else 0, dual_bn=arm == "advbn").attach(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    train, targets = _loaders(args, seed)
    steps = args.epochs * len(train)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, steps // 2), gamma=0.1)
    t0, losses = time.perf_counter(), []
    for _ in range(args.epochs):
        for x, y in train:
            model.train()
            loss = adv.loss(x, y) if arm == "advbn" else F.cross_entropy(model(x), y)
            if arm != "advbn":
                adv.discard()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
    train_s = time.perf_counter() - t0
    result = {"arm": arm, "seed": seed, "layer": args.layer, "epochs": args.epochs, "steps": steps, "lr": args.lr,
              "img_size": args.img_size, "train_seconds": round(train_s, 1), "final_loss": float(np.mean(losses[-10:])),
              "clean_bn": {k: _accuracy(model, dl) for k, dl in targets.items()}}
    if arm == "advbn":
        with adv.route("adv"):
            result["adv_bn"] = {k: _accuracy(model, dl) for k, dl in targets.items()}
    adv.detach()
    return result


def _ci(values: list[float]) -> str:
    v = 100 * np.asarray(values)
    if len(v) < 2:
        return f"{v.mean():+.2f}"
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return f"{v.mean():+.2f} ± {half:.2f}" + (" (excludes 0)" if abs(v.mean()) > half else " (includes 0)")


def table(runs: list[dict], args: argparse.Namespace) -> str:
    by = {(r["arm"], r["seed"]): r for r in runs}
    seeds = sorted({s for a, s in by if a == "standard"} & {s for a, s in by if a == "advbn"})
    domains = sorted(runs[0]["clean_bn"]) if runs else []
    lines = [f"# PACS single-source: {args.source} -> {', '.join(domains)}", "",
             f"EfficientNet-Lite0 (ImageNet weights), {args.img_size} px, prefix up to `{args.layer}` frozen in both "
             f"arms, {args.epochs} epochs of batch {args.batch_size}, SGD lr {args.lr} (x0.1 at half), seeds "
             f"{seeds}. Accuracy in %, mean over seeds; Δ = AdvBN - standard paired by seed, 95 % t-interval.", "",
             "| target | standard | AdvBN, clean BN | AdvBN, adv BN | Δ clean BN | Δ adv BN |",
             "|---|---|---|---|---|---|"]
    for d in [*domains, "mean"]:
        def acc(r: dict, key: str, d: str = d) -> float:
            return float(np.mean(list(r[key].values()))) if d == "mean" else r[key][d]
        std = [acc(by[("standard", s)], "clean_bn") for s in seeds]
        cl = [acc(by[("advbn", s)], "clean_bn") for s in seeds]
        ad = [acc(by[("advbn", s)], "adv_bn") for s in seeds]
        lines.append(f"| {d} | {100 * np.mean(std):.2f} | {100 * np.mean(cl):.2f} | {100 * np.mean(ad):.2f} | "
                     f"{_ci([a - b for a, b in zip(cl, std)])} | {_ci([a - b for a, b in zip(ad, std)])} |")
    secs = {a: np.mean([r["train_seconds"] for (b, _), r in by.items() if b == a]) for a in ("standard", "advbn")}
    lines += ["", f"Training time per run (one CPU core): standard {secs['standard']:.0f} s, AdvBN "
                  f"{secs['advbn']:.0f} s.", "", "Command: `python recipes/pacs/single_source.py "
                  f"--seeds {' '.join(map(str, seeds))}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="photo")
    ap.add_argument("--data-dir", default=None, help="PACS folder (default: ../shared/data/pacs or $ADVBN_DATA)")
    ap.add_argument("--layer", default="blocks.1", help="AdvBN layer; the prefix up to it is frozen in both arms")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("-b", "--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["standard", "advbn"], choices=["standard", "advbn"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="48 training and 32 test images per domain, 1 epoch")
    ap.add_argument("--output", type=Path, default=Path("recipes/pacs/results/single_source"))
    args = ap.parse_args(argv)
    if args.tiny:
        args.epochs, args.batch_size = 1, 16
    torch.set_num_threads(args.threads)
    runs_dir = args.output / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for arm in args.arms:
            path = runs_dir / f"{arm}_seed{seed}.json"
            if path.exists():
                continue
            result = run_one(args, arm, seed)
            path.write_text(json.dumps(result, indent=1))
            print(json.dumps(result), flush=True)
    runs = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))]
    if {r["arm"] for r in runs} >= {"standard", "advbn"}:
        text = table(runs, args)
        (args.output / "README.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
