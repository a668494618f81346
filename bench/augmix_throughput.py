"""Images/s of the AugMix paths on CPU: our per-image PIL transform, our batched tensor path, timm's AugMix.

    python bench/augmix_throughput.py --sizes 32 224 --threads 1

The per-image paths run in this process (one worker); the batched path uses ``torch.set_num_threads(threads)``.
Ratios are relative to timm's transform (timm's default op list, which adds 4 ops not in the paper).
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from PIL import Image

from advbn_aug.image import AugMix, AugMixBatch


def _rate(fn, n_images: int, min_time: float) -> float:
    fn()  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        done += n_images
    return done / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-time", type=float, default=3.0, help="seconds per measurement")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    from timm.data.auto_augment import augment_and_mix_transform

    timm_aug = augment_and_mix_transform("augmix-m3-w3", {"translate_const": 250, "img_mean": (124, 116, 104)})
    ours_pil = AugMix()
    ours_batch = AugMixBatch(check_range=False)
    print(f"AugMix severity 3, width 3, depth 1-3; CPU, torch threads={args.threads}, batch {args.batch_size}")
    print(f"{'size':>5} {'timm PIL (img/s)':>17} {'ours PIL (img/s)':>17} {'ours batched (img/s)':>21} "
          f"{'ours PIL / timm':>16} {'batched / timm':>15}")
    for size in args.sizes:
        n_pil = 64 if size <= 64 else 8
        imgs = [Image.fromarray(np.random.randint(0, 256, (size, size, 3), np.uint8)) for _ in range(n_pil)]
        r_timm = _rate(lambda imgs=imgs: [timm_aug(im) for im in imgs], n_pil, args.min_time)
        r_pil = _rate(lambda imgs=imgs: [ours_pil(im) for im in imgs], n_pil, args.min_time)
        bs = args.batch_size if size <= 64 else max(8, args.batch_size // 8)
        x = torch.rand(bs, 3, size, size)
        r_batch = _rate(lambda x=x: ours_batch(x), bs, args.min_time)
        print(f"{size:>5} {r_timm:>17.0f} {r_pil:>17.0f} {r_batch:>21.0f} {r_pil / r_timm:>16.2f} "
              f"{r_batch / r_timm:>15.2f}")


if __name__ == "__main__":
    main()
