"""CPU cost of one PACS training step per arm (EfficientNet-Lite0, ImageNet weights, 128 px, batch 32, one thread).

Times the recipe's own training step (``Policy.step`` + backward + SGD, prefix up to the AdvBN layer frozen) in CPU
seconds of this thread (``time.thread_time``), which a busy machine distorts less than wall time (contention for
caches and memory still inflates it):

    OMP_NUM_THREADS=1 nice -n 19 python bench/pacs_step_cost.py --arms standard advbn --steps 2 \
        --out runs/pacs-pilot/step_cost.json   # the committed measurement: bench/results/pacs_step_cost.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", nargs="+", default=["standard", "advbn", "mixstyle", "dsu", "augmix", "augmix_advbn"])
    ap.add_argument("--layer", default="blocks.1", help="the AdvBN layer (the frozen prefix ends there)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per arm (after one untimed warm-up step)")
    ap.add_argument("-b", "--batch-size", type=int, default=32)
    ap.add_argument("--img-size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=None, help="JSON written after each arm")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from advbn_aug.recipe.core.train import _build_policy, load_fresh_model, prefix_modules_of
    from advbn_aug.recipe.pacs.config import PACS_ARMS, PACSConfig

    cfg = PACSConfig(advbn={**PACSConfig().advbn, "layer": args.layer}, batch_size=args.batch_size,
                     img_size=args.img_size)
    out: dict = {"layer": args.layer, "batch_size": args.batch_size, "img_size": args.img_size,
                 "threads": torch.get_num_threads(), "torch": torch.__version__, "cpu_seconds_per_step": {}}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 3, args.img_size, args.img_size, generator=g)
    y = torch.randint(0, 7, (args.batch_size,), generator=g)
    for name in args.arms:
        arm = PACS_ARMS[name]
        model, _ = load_fresh_model(cfg)
        for m in prefix_modules_of(model, cfg):
            m.requires_grad_(False)
        policy = _build_policy(cfg, arm)
        policy.attach(model)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
        times = []
        for step in range(args.steps + 1):
            model.train()
            for m in prefix_modules_of(model, cfg):
                m.eval()
            t0 = time.thread_time()
            loss, _ = policy.step(model, x, y, step=step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.thread_time() - t0)
        out["cpu_seconds_per_step"][name] = round(sum(times[1:]) / args.steps, 3)
        print(name, out["cpu_seconds_per_step"][name], flush=True)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
