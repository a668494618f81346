"""Example grid of Stylized-CIFAR-10 -> results/stylized/examples.jpg: per row a content image, the PACS painting
drawn for it, and the stylised image at each strength (the 32 px images of the test set, enlarged without
smoothing). Uses the same settings as ``advbn-aug eval --stylized`` (:class:`StylizedConfig` defaults), so after
that command the sets come from the cache. Run from the repository root.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from advbn_aug.datasets.cifar10 import CIFAR10_CLASSES, load_cifar10
from advbn_aug.eval.stylized import StylizedConfig, balanced_subset, load_style_pool, open_network, stylized_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="recipes/cifar10/results/stylized/examples.jpg")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: the shared data)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    cfg = StylizedConfig()
    x, y = load_cifar10("test", args.data_dir)
    idx = balanced_subset(y, cfg.images, cfg.seed)
    pool = load_style_pool(cfg.style_dir, cfg.style_domain)
    sets = stylized_sets(x[idx], y[idx], cfg.strengths, seed=cfg.seed, style_pool=pool,
                         network=open_network(cfg.models, cfg.threads), cache_dir=args.cache_dir, progress=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(sets.values()))
    cols = 2 + len(sets)
    fig, axes = plt.subplots(args.rows, cols, figsize=(1.25 * cols, 1.3 * args.rows), squeeze=False)
    titles = ["content", "style (PACS art)", *[f"strength {s:g}" for s in sets]]
    for r in range(args.rows):
        row = [x[idx[r]], pool[first.style_index[r]], *[v.images[r] for v in sets.values()]]
        for c, img in enumerate(row):
            ax = axes[r, c]
            ax.imshow(np.asarray(img), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        axes[r, 0].set_ylabel(CIFAR10_CLASSES[y[idx[r]]], fontsize=8)
    fig.tight_layout(pad=0.3)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
