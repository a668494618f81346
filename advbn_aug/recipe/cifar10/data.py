"""The recipe's data: the arrays every run shares (training subset, evaluation subsets, clean test sets) and the
DeepAugment copies of the training subset (made once, cached)."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advbn_aug.recipe.cifar10.config import RecipeConfig
from advbn_aug.recipe.core.config import digest
from advbn_aug.recipe.core.data import class_balanced_subset
from advbn_aug.recipe.core.lock import made_once

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)


class RecipeData:
    """The arrays every run needs, loaded once: training subset, eval subset, clean test sets."""

    def __init__(self, cfg: RecipeConfig, data_dir: str | Path | None):
        from advbn_aug.datasets.cifar10 import load_cifar10

        self.data_dir = data_dir
        x, y = load_cifar10("train", data_dir)
        self.train_x, self.train_y = class_balanced_subset(x, y, cfg.train_subset, seed=0)
        xt, yt = load_cifar10("test", data_dir)
        n = len(xt) if cfg.clean_test_images is None else min(cfg.clean_test_images, len(xt))
        keep = np.sort(np.random.default_rng(0).permutation(len(xt))[:n])
        self.test_x, self.test_y = xt[keep], yt[keep]
        m = min(cfg.eval_images, len(xt))
        keep = np.sort(np.random.default_rng(0).permutation(len(xt))[:m])
        self.eval_x, self.eval_y = np.ascontiguousarray(xt[keep]), yt[keep]
        self.lossless_x = self.lossless_y = self.lossless_jpeg_x = None
        try:
            xl, yl = load_cifar10("test_lossless", data_dir)
            from advbn_aug.datasets.cifar10 import shared_data_dir

            root = Path(data_dir) if data_dir is not None else shared_data_dir()
            idx = None
            cands = (root / "test_lossless1000.npz", root / "cifar10" / "test_lossless1000.npz") if root else ()
            for cand in cands:
                if cand.is_file():
                    idx = np.load(cand)["test_index"]
                    break
            k = len(xl) if cfg.lossless_images is None else min(cfg.lossless_images, len(xl))
            self.lossless_x, self.lossless_y = xl[:k], yl[:k]
            if idx is not None:
                self.lossless_jpeg_x = xt[idx[:k]]
        except FileNotFoundError:
            log.warning("test_lossless not found: the JPEG-vs-lossless gap is not computed")

    def describe(self) -> str:
        """The log line of what was loaded."""
        return (f"data: {len(self.train_x)} training images, {len(self.test_x)} clean test images, "
                f"{len(self.eval_x)} corruption images, lossless "
                f"{'n/a' if self.lossless_x is None else len(self.lossless_x)}")


def deepaugment_data(cfg: RecipeConfig, data: RecipeData, cache_root: Path, device: torch.device,
                     progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Train the DeepAugment nets on the training subset and write a DeepAugment copy of it per net, once.

    Cached under ``cache_root/deepaugment-<key>/`` (``<net>.pt`` weights, ``<net>.npz`` images); returns the copies
    concatenated ``(x, y)`` (``len(nets) * train_subset`` images).
    """
    da = dict(cfg.deepaugment)
    key = digest({"da": da, "model": cfg.model, "subset": cfg.train_subset,
                  "images": hashlib.sha1(data.train_x[:256].tobytes()).hexdigest(), "n": len(data.train_x)})
    folder = cache_root / f"deepaugment-{key}"
    return made_once(folder, lambda: _deepaugment_locked(da, folder, data, device, progress), "the DeepAugment data")


def _deepaugment_locked(da: dict[str, Any], folder: Path, data: RecipeData, device: torch.device, progress: bool
                        ) -> tuple[np.ndarray, np.ndarray]:
    from advbn_aug.image import DeepAugment, build_deepaugment_net, save_deepaugment_net, train_deepaugment_net
    from advbn_aug.image.deepaugment_nets import load_deepaugment_net

    xs, ys = [], []
    for i, net_name in enumerate(da.get("nets", ["cae", "edsr"])):
        out = folder / f"{net_name}.npz"
        if out.is_file():
            z = np.load(out)
            xs.append(z["x"])
            ys.append(z["y"])
            continue
        weights = folder / f"{net_name}.pt"
        if weights.is_file():
            net = load_deepaugment_net(weights)
        else:
            torch.manual_seed(i)
            net = build_deepaugment_net(net_name, channels=int(da.get("channels", 32)))
            t0 = time.perf_counter()
            hist = train_deepaugment_net(net, data.train_x, epochs=int(da.get("epochs", 2)),
                                         batch_size=int(da.get("batch_size", 128)), lr=float(da.get("lr", 1e-3)),
                                         device=device, seed=i, progress=progress)
            save_deepaugment_net(net.cpu(), weights)
            log.info("DeepAugment %s trained on %d images in %.1fs, loss per epoch %s", net_name, len(data.train_x),
                     time.perf_counter() - t0, [round(h, 5) for h in hist])
        torch.manual_seed(1000 + i)
        aug = DeepAugment(net, float(da.get("strength", 1.0)), group_size=int(da.get("group_size", 8))).to(device)
        gen = np.empty_like(data.train_x)
        bs = 256
        from tqdm.auto import tqdm

        with torch.no_grad():
            for j in tqdm(range(0, len(gen), bs), desc=f"deepaugment {net_name}", unit="batch", disable=not progress):
                chunk = torch.from_numpy(data.train_x[j:j + bs]).to(device).permute(0, 3, 1, 2).float() / 255.0
                res = aug(chunk)
                gen[j:j + len(chunk)] = (res * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()
        tmp = folder / f"{net_name}.tmp.npz"
        np.savez(tmp, x=gen, y=data.train_y)
        tmp.replace(out)
        log.info("DeepAugment copy written: %s (%d images)", out, len(gen))
        xs.append(gen)
        ys.append(data.train_y)
    return np.concatenate(xs), np.concatenate(ys)
