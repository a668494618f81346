"""``advbn-aug deepaugment``: train DeepAugment networks on your images, or write a DeepAugment copy of a dataset.

    advbn-aug deepaugment train --net cae --output cae.pt --epochs 5            # reconstruction on CIFAR-10 train
    advbn-aug deepaugment train --net edsr --output edsr.pt --epochs 5          # x2 super-resolution
    advbn-aug deepaugment generate --weights cae.pt --output cifar10_cae.npz    # x uint8 (N, 32, 32, 3), y

``--data-dir`` is a CIFAR-10 folder (shared ``*_jpeg.npz`` files or torchvision's ``cifar-10-batches-py``) or an
``.npz`` file with ``x`` (uint8 ``(N, H, W, 3)``) and ``y``; without it, the shared data folder is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

__all__ = ["add_arguments", "run"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder or .npz with x/y (default: shared data)")
    p.add_argument("--split", default="train", help="CIFAR-10 split when --data-dir is a folder (default: train)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", required=True, help="output file (.pt weights for train, .npz dataset for generate)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    tr = sub.add_parser("train", help="train a CAE (reconstruction) or EDSR (x2 super-resolution) on images")
    tr.add_argument("--net", choices=("cae", "edsr"), default="cae")
    tr.add_argument("--channels", type=int, default=32)
    tr.add_argument("--epochs", type=int, default=5)
    tr.add_argument("--lr", type=float, default=1e-3)
    _common(tr)
    gen = sub.add_parser("generate", help="write a DeepAugment copy of a dataset (.npz with x, y)")
    gen.add_argument("--weights", required=True, help="network file from `deepaugment train`")
    gen.add_argument("--strength", type=float, default=1.0, help="perturbation strength (0: unperturbed network)")
    gen.add_argument("--group-size", type=int, default=8, help="images sharing one perturbation draw")
    _common(gen)


def _load_images(data_dir: str | None, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    if data_dir is not None and Path(data_dir).suffix == ".npz":
        path = Path(data_dir)
        if not path.is_file():
            raise FileNotFoundError(f"--data-dir {path} does not exist")
        z = np.load(path)
        if "x" not in z or "y" not in z:
            raise ValueError(f"{path} must hold arrays 'x' (uint8 (N, H, W, 3)) and 'y'; it has {list(z.keys())}")
        x, y = z["x"], z["y"]
    else:
        from advbn_aug.datasets.cifar10 import load_cifar10

        x, y = load_cifar10(split, data_dir)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    return x, y


def _train(args: argparse.Namespace) -> int:
    from advbn_aug.image.deepaugment import train_deepaugment_net
    from advbn_aug.image.deepaugment_nets import build_deepaugment_net, save_deepaugment_net

    x, _ = _load_images(args.data_dir, args.split, args.limit)
    torch.manual_seed(args.seed)
    net = build_deepaugment_net(args.net, channels=args.channels)
    history = train_deepaugment_net(net, x, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                    device=args.device, seed=args.seed, progress=True)
    path = save_deepaugment_net(net.cpu(), args.output)
    loss = "L1" if args.net == "edsr" else "MSE"
    print(f"trained {args.net} on {len(x)} images: {loss} per epoch " + ", ".join(f"{v:.5f}" for v in history))
    print(f"wrote {path}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from advbn_aug.image.deepaugment import DeepAugment

    x, y = _load_images(args.data_dir, args.split, args.limit)
    torch.manual_seed(args.seed)
    aug = DeepAugment.from_file(args.weights, args.strength, group_size=args.group_size).to(args.device)
    out = np.empty_like(x)
    for i in tqdm(range(0, len(x), args.batch_size), desc="deepaugment", unit="batch"):
        chunk = torch.from_numpy(x[i : i + args.batch_size]).to(args.device).permute(0, 3, 1, 2).float() / 255.0
        res = aug(chunk)
        out[i : i + len(chunk)] = (res * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    path = Path(args.output)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")  # what np.savez would write
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=out, y=y)
    print(f"wrote {len(out)} DeepAugment images (strength {args.strength}) to {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.mode == "train":
        return _train(args)
    if args.mode == "generate":
        return _generate(args)
    raise ValueError(f"unknown mode {args.mode!r}")
