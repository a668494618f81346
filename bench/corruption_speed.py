"""Generation speed of the common corruptions (images/s), at 32 px (CIFAR-10-C table) and 224 px (ImageNet-C table).

    python bench/corruption_speed.py [--severity 3] [--n32 500] [--n224 16] [--repeats 3]

Single process, one batch per corruption (best of ``--repeats``), synthetic images (smooth gradients plus noise).
The comparison column against the ``imagecorruptions`` package is filled only when that package imports (it does
not work under NumPy 2, so it is normally absent).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from advbn_aug.eval.corruptions import ALL_CORRUPTIONS, corrupt
from advbn_aug.eval.imagecorruptions_compat import load_imagecorruptions


def _images(n: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 + 0.3 * np.sin(8 * xx * yy)], -1)
    return (np.clip(base[None] + 0.1 * rng.standard_normal((n, size, size, 3)), 0, 1) * 255).astype(np.uint8)


def _rate(fn, n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def _reference():
    try:
        ref = load_imagecorruptions()
        ref.corrupt(np.zeros((32, 32, 3), np.uint8), corruption_name="contrast", severity=1)
        return ref.corrupt
    except Exception as err:  # not installed
        print(f"imagecorruptions not available ({type(err).__name__}: {err}); comparison column omitted\n")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--n32", type=int, default=500, help="images per batch at 32 px")
    parser.add_argument("--n224", type=int, default=16, help="images per batch at 224 px")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ref = _reference()
    sets = {32: (_images(args.n32, 32), "cifar10"), 224: (_images(args.n224, 224), "imagenet")}
    for x, dataset in sets.values():  # warm-up: imports, frost texture banks
        corrupt(x[:1], "frost", 1, dataset=dataset)
    header = "| corruption | 32 px img/s | 224 px img/s |" + (
        " imagecorruptions 32 px img/s | imagecorruptions 224 px img/s | ours / imagecorruptions at 224 px |"
        if ref else "")
    print(f"severity {args.severity}, batches of {args.n32} (32 px) / {args.n224} (224 px), best of {args.repeats}\n")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in ALL_CORRUPTIONS:
        row = [name]
        for x, dataset in sets.values():
            rate = _rate(lambda x=x, d=dataset, n=name: corrupt(x, n, args.severity, dataset=d), len(x),
                         args.repeats)
            row.append(f"{rate:,.0f}")
        if ref:
            ref_rates = []
            for x, _ in sets.values():
                xs = x[: args.n224]
                ref_rates.append(_rate(lambda xs=xs, n=name: [ref(im, corruption_name=n, severity=args.severity)
                                                              for im in xs], len(xs), 1))
            row += [f"{r:,.0f}" for r in ref_rates]
            row.append(f"{float(row[2].replace(',', '')) / ref_rates[1]:.2f}x")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
