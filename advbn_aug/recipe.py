"""Recipes: fine-tuning arms that test "AdvBN is complementary to image-space augmentation", and the
``advbn-aug recipe`` command.

    advbn-aug recipe cifar10 --tiny                 # the whole pipeline at toy scale (< 5 min on CPU)
    advbn-aug recipe cifar10                        # the full table (recipes/cifar10/README.md)

Library use::

    from advbn_aug.recipe import RecipeConfig, run_recipe
    table = run_recipe(RecipeConfig(arms=["standard", "advbn"], seeds=[0]), output="results", runs_dir="runs")

Every (arm, seed) run fine-tunes the pretrained CIFAR ResNet with the stem and ``layer1`` frozen, exports a plain
``state_dict`` (the pretrained file's keys) to ``<runs>/<arm>/seed<k>/model.pt``, evaluates it (clean JPEG test set,
lossless test images, CIFAR-10-C-parameter corruptions generated and cached by :mod:`advbn_aug.eval`) and writes
``result.json`` next to it. Finished runs are skipped, unfinished ones resume from ``ckpt.pt``; after each run the
table (``results.md``, ``results.json``, ``results.png``) is rewritten from every finished run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .recipe_config import (
    ARM_ORDER,
    DEFAULT_ARMS,
    FULL,
    PRESETS,
    SHORT,
    TINY,
    ArmConfig,
    RecipeConfig,
    digest,
    load_arms,
    prefix_names,
)

__all__ = ["RecipeConfig", "ArmConfig", "DEFAULT_ARMS", "run_recipe", "run_arm", "aggregate", "export_state_dict",
           "add_arguments", "run", "FULL", "SHORT", "TINY", "code_version"]

log = logging.getLogger("advbn_aug.recipe")
BENCHMARKS = ("cifar10",)


# ------------------------------------------------------------------------------------------------ data
class RecipeData:
    """The arrays every run needs, loaded once: training subset, eval subset, clean test sets."""

    def __init__(self, cfg: RecipeConfig, data_dir: str | Path | None):
        from .data import load_cifar10

        self.data_dir = data_dir
        x, y = load_cifar10("train", data_dir)
        self.train_x, self.train_y = _balanced_subset(x, y, cfg.train_subset, seed=0)
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
            from .data import shared_data_dir

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


def _balanced_subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images with (as far as possible) equal class counts, in a seeded random order."""
    rng = np.random.default_rng(seed)
    if n is None or n >= len(x):
        perm = rng.permutation(len(x))
        return x[perm], y[perm]
    classes = np.unique(y)
    per = n // len(classes)
    picks = [rng.permutation(np.flatnonzero(y == c))[:per] for c in classes]
    chosen = np.concatenate(picks)
    rest = np.setdiff1d(np.arange(len(x)), chosen)
    chosen = np.concatenate([chosen, rng.permutation(rest)[: n - len(chosen)]])
    chosen = rng.permutation(chosen)
    return x[chosen], y[chosen]


# ------------------------------------------------------------------------------------------------ DeepAugment data
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
    while True:  # one process makes the data; concurrent workers wait for it
        with _run_lock(folder) as mine:
            if mine:
                return _deepaugment_locked(da, folder, data, device, progress)
        log.info("waiting for another process to finish the DeepAugment data in %s", folder)
        time.sleep(10)


def _deepaugment_locked(da: dict[str, Any], folder: Path, data: RecipeData, device: torch.device, progress: bool
                        ) -> tuple[np.ndarray, np.ndarray]:
    from .image import DeepAugment, build_deepaugment_net, save_deepaugment_net, train_deepaugment_net
    from .image.deepaugment_nets import load_deepaugment_net

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


# ------------------------------------------------------------------------------------------------ model
def _load_model(cfg: RecipeConfig) -> tuple[nn.Module, list[str]]:
    from .cifar_resnet import load_pretrained_cifar_resnet

    depth = int(cfg.model.removeprefix("resnet"))
    model = load_pretrained_cifar_resnet(depth)
    return model, pretrained_keys(depth)


def pretrained_keys(depth: int) -> list[str]:
    """The keys of the pretrained weights file (``module.`` stripped), in file order."""
    from .cifar_resnet import _default_weights

    state = torch.load(_default_weights(depth), map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    return [k.removeprefix("module.") for k in state]


def _prefix_modules(model: nn.Module, cfg: RecipeConfig) -> list[nn.Module]:
    return [getattr(model, name) for name in prefix_names(cfg.advbn.get("layer", "layer1"))]


def export_state_dict(model: nn.Module, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """The plain model's ``state_dict`` restricted to (and checked against) ``keys``, on CPU, contiguous."""
    state = model.state_dict()
    missing = [k for k in keys if k not in state]
    if missing:
        raise RuntimeError(f"exported model lacks pretrained keys {missing[:5]}: was AdvBN detached?")
    extra = sorted(set(state) - set(keys) - {k for k in state if k.endswith("num_batches_tracked")})
    if extra:
        raise RuntimeError(f"exported model has keys that the pretrained file lacks: {extra[:5]}")
    return {k: state[k].detach().cpu().clone().contiguous() for k in keys}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _random_crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Per-image random crop (zero padding ``pad``) and horizontal flip, as in the pretrained model's training."""
    n, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    ox = torch.randint(0, 2 * pad + 1, (n,))
    oy = torch.randint(0, 2 * pad + 1, (n,))
    rows = (oy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (ox.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
    idx = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    ch = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    out = xp[idx, ch, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    flip = (torch.rand(n) < 0.5).to(x.device).view(n, 1, 1, 1)
    return torch.where(flip, out.flip(-1), out)


def _build_policy(cfg: RecipeConfig, arm: ArmConfig):
    from .cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD
    from .image import AugMixConfig
    from .policy import Policy, PolicyConfig

    features = []
    if arm.advbn:
        features.append({"type": "advbn", **cfg.advbn, **arm.advbn_options, "freeze_prefix": True})
    features += [dict(spec) for spec in arm.features]
    pc = PolicyConfig(augmix=AugMixConfig.from_dict(dict(cfg.augmix)).to_dict() if arm.augmix else None,
                      features=features, jsd_weight=cfg.jsd_weight, mean=list(CIFAR_RESNET_MEAN),
                      std=list(CIFAR_RESNET_STD))
    return Policy(pc)


_CODE_VERSION: dict[str, Any] | None = None


def code_version() -> dict[str, Any]:
    """The git commit of the code this process imported, read once (at the first call, which ``run_recipe`` makes
    before any work): ``{"commit": sha or None, "dirty": bool or None}``. ``dirty``: tracked files of the package
    differed from the commit; ``None`` values outside a git checkout (an installed wheel: ``version`` then says
    which)."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        import subprocess

        from . import __version__

        root = Path(__file__).resolve().parent
        info: dict[str, Any] = {"commit": None, "dirty": None, "version": __version__}
        try:
            info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                            check=True, timeout=20).stdout.strip()
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                                    cwd=root.parent, capture_output=True, text=True, check=True, timeout=20).stdout
            info["dirty"] = any(line[3:].startswith(("advbn_aug/", "integrations/")) for line in status.splitlines())
        except (OSError, subprocess.SubprocessError):
            pass
        _CODE_VERSION = info
    return dict(_CODE_VERSION)


# ------------------------------------------------------------------------------------------------ one run
@contextlib.contextmanager
def _run_lock(folder: Path) -> Iterator[bool]:
    """A per-run lock file so several background processes can share the work; yields False if taken."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / "run.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
                os.kill(pid, 0)
                alive = pid != os.getpid()
            except (ValueError, ProcessLookupError, PermissionError, OSError):
                alive = False
            if alive:
                yield False
                return
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def _run_logger(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


def _lr_at(cfg: RecipeConfig, step: int) -> float:
    return cfg.lr * (cfg.decay_rate if step >= int(round(cfg.decay_at * cfg.steps)) else 1.0)


def _train(cfg: RecipeConfig, arm: ArmConfig, seed: int, data: RecipeData, run_dir: Path, device: torch.device,
           amp: bool, extra: tuple[np.ndarray, np.ndarray] | None, progress: bool) -> tuple[nn.Module, dict]:
    model, _ = _load_model(cfg)
    for m in _prefix_modules(model, cfg):
        m.requires_grad_(False)
    policy = _build_policy(cfg, arm)
    policy.attach(model)
    model.to(device)
    policy.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, history, train_seconds = 0, [], 0.0
    ckpt_path = run_dir / "ckpt.pt"
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck.get("train_key") == digest(cfg.train_key()) and ck.get("arm") == arm.to_dict():
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            scaler.load_state_dict(ck["scaler"])
            start, history, train_seconds = ck["step"], ck["history"], ck["train_seconds"]
            log.info("resumed %s seed %d from step %d", arm.name, seed, start)
        else:
            log.info("ignoring %s: it was written with other settings", ckpt_path)
    x_pool, y_pool = data.train_x, data.train_y
    if extra is not None:
        x_pool, y_pool = np.concatenate([x_pool, extra[0]]), np.concatenate([y_pool, extra[1]])
    # the batch sequence depends only on (seed, pool size, steps): resuming continues it exactly
    rng = np.random.default_rng(seed)
    need = cfg.steps * cfg.batch_size
    order = np.concatenate([rng.permutation(len(x_pool)) for _ in range(-(-need // len(x_pool)))])[:need]
    n_params = sum(p.numel() for p in params)
    log.info("train %s seed %d: %d steps x %d images (pool %d), %d trainable parameters, device %s", arm.name, seed,
             cfg.steps, cfg.batch_size, len(x_pool), n_params, device)
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start, desc=f"{arm.name} s{seed}", unit="step", disable=not progress,
               dynamic_ncols=True)
    model.train()
    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        torch.manual_seed(seed * 1_000_003 + step)
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, step)
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        x = torch.from_numpy(x_pool[idx]).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        y = torch.from_numpy(y_pool[idx]).to(device)
        x = _random_crop_flip(x)
        model.train()
        for m in _prefix_modules(model, cfg):
            m.eval()
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss, info = policy.step(model, x, y, epoch=0, step=step)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        rec = {k: round(float(v), 5) for k, v in info.items() if k.startswith("loss")}
        history.append({"step": step + 1, "lr": _lr_at(cfg, step), **rec})
        if not np.isfinite(rec["loss"]):
            raise FloatingPointError(f"{arm.name} seed {seed}: loss is {rec['loss']} at step {step + 1}")
        bar.update()
        bar.set_postfix(loss=f"{rec['loss']:.3f}")
        done = step + 1
        if done % max(1, cfg.steps // 10) == 0 or done == cfg.steps:
            log.info("%s seed %d step %d/%d %s", arm.name, seed, done, cfg.steps,
                     " ".join(f"{k}={v}" for k, v in rec.items()))
        if done % cfg.checkpoint_interval == 0 and done < cfg.steps:
            elapsed = train_seconds + time.perf_counter() - t0
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                        "step": done, "history": history, "train_seconds": elapsed, "arm": arm.to_dict(),
                        "train_key": digest(cfg.train_key())}, tmp)
            tmp.replace(ckpt_path)
    bar.close()
    train_seconds += time.perf_counter() - t0
    if arm.advbn:  # the adversarial-BatchNorm route, for evaluating through it (the paper's route for style shifts)
        from .dual_norm import select_bn_state

        _, keys = _load_model(cfg)
        adv = select_bn_state(model.state_dict(), "adv")
        tmp = (run_dir / "model_adv.pt").with_suffix(".tmp")
        torch.save({k: adv[k].detach().cpu().clone().contiguous() for k in keys}, tmp)
        tmp.replace(run_dir / "model_adv.pt")
    plain = policy.detach()
    for p in plain.parameters():
        p.requires_grad_(True)
    return plain.cpu().eval(), {"history": history, "train_seconds": round(train_seconds, 2),
                                "trainable_parameters": n_params}


def fuse_for_eval(model: nn.Module) -> nn.Module:
    """A copy of a CIFAR ResNet with every BatchNorm folded into its convolution, in ``channels_last`` memory format
    (eval only; the same function up to float rounding; ``bench/eval_speed.py`` measures the gain). Other models are
    returned unchanged."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from .cifar_resnet import BasicBlock, CifarResNet

    if not isinstance(model, CifarResNet):
        return model
    fused = copy.deepcopy(model).eval()
    fused.conv1, fused.bn1 = fuse_conv_bn_eval(fused.conv1, fused.bn1), nn.Identity()
    for block in fused.modules():
        if isinstance(block, BasicBlock):
            block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
            block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
    # the evaluation's batches are NHWC uint8 permuted to NCHW, i.e. channels_last already: matching the weights
    # lets the convolutions skip two layout conversions per layer
    return fused.to(memory_format=torch.channels_last)


def _evaluate(model: nn.Module, cfg: RecipeConfig, data: RecipeData, device: torch.device, amp: bool, name: str,
              out_dir: Path, cache_dir: str | None, progress: bool) -> dict[str, Any]:
    from .cifar_resnet import CIFAR_RESNET_MEAN, CIFAR_RESNET_STD
    from .eval import BENCHMARK_CORRUPTIONS, EvalConfig, evaluate_corruptions, predict

    t0 = time.perf_counter()
    model = fuse_for_eval(model.eval())
    run = dict(batch_size=cfg.eval_batch_size, device=device, mean=CIFAR_RESNET_MEAN, std=CIFAR_RESNET_STD, amp=amp)
    out: dict[str, Any] = {}
    pred, _ = predict(model, data.test_x, **run)
    out["clean_acc_jpeg"] = float((pred == data.test_y).mean())
    out["clean_images_jpeg"] = len(data.test_y)
    if data.lossless_x is not None:
        pred, _ = predict(model, data.lossless_x, **run)
        out["clean_acc_lossless"] = float((pred == data.lossless_y).mean())
        out["lossless_images"] = len(data.lossless_y)
        if data.lossless_jpeg_x is not None:
            pred, _ = predict(model, data.lossless_jpeg_x, **run)
            out["clean_acc_jpeg_same"] = float((pred == data.lossless_y).mean())
            out["jpeg_gap"] = out["clean_acc_lossless"] - out["clean_acc_jpeg_same"]
    ecfg = EvalConfig(corruptions=cfg.corruptions, severities=tuple(cfg.severities), dataset="cifar10",
                      batch_size=cfg.eval_batch_size, device=str(device), amp=amp, mean=CIFAR_RESNET_MEAN,
                      std=CIFAR_RESNET_STD, cache_dir=cache_dir, name=name, progress=progress, output=str(out_dir))
    res = evaluate_corruptions(model, data.eval_x, data.eval_y, ecfg)
    out["corruption_images"] = res.num_images
    out["clean_acc_eval_subset"] = res.clean_accuracy
    out["mca"] = res.summary["mean_corruption_accuracy"]
    bench = [c for c in res.accuracy if c in BENCHMARK_CORRUPTIONS]
    out["mca_benchmark15"] = float(np.mean([a for c in bench for a in res.accuracy[c].values()])) if bench else None
    out["per_corruption"] = res.summary["per_corruption_accuracy"]
    out["per_severity"] = {str(k): v for k, v in res.summary["per_severity_accuracy"].items()}
    out["accuracy"] = {c: {str(s): a for s, a in per.items()} for c, per in res.accuracy.items()}
    out["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _finished(path: Path, cfg: RecipeConfig, arm: ArmConfig) -> dict[str, Any] | None:
    """The result stored at ``path`` if it is a finished run of ``arm`` with ``cfg``'s settings."""
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    same = (old.get("train_key") == digest(cfg.train_key()) and old.get("eval_key") == digest(cfg.eval_key())
            and old.get("arm") == arm.to_dict())
    return old if same else None


def run_arm(cfg: RecipeConfig, arm: ArmConfig, seed: int, data: RecipeData, runs_dir: Path, *,
            device: torch.device, amp: bool = True, cache_dir: str | None = None, progress: bool = True,
            force: bool = False, log_dir: Path | None = None, archive_dir: Path | None = None
            ) -> dict[str, Any] | None:
    """Train (resumably), export, evaluate one (arm, seed); returns its result dict, or ``None`` if another process
    holds the run. A finished run with the same settings (in ``runs_dir``, or its committed copy in ``archive_dir``)
    is read back instead of recomputed; a new result is also copied to ``archive_dir/<arm>/seed<k>/result.json``."""
    run_dir = runs_dir / arm.name / f"seed{seed}"
    result_path = run_dir / "result.json"
    train_key, eval_key = digest(cfg.train_key()), digest(cfg.eval_key())
    archived = archive_dir / arm.name / f"seed{seed}" / "result.json" if archive_dir is not None else None
    for path in (result_path, archived):
        old = _finished(path, cfg, arm) if path is not None and not force else None
        if old is not None:
            log.info("skip %s seed %d: finished (%s)", arm.name, seed, path)
            return old
    with _run_lock(run_dir) as mine:
        if not mine:
            log.info("skip %s seed %d: another process is running it", arm.name, seed)
            return None
        handler = _run_logger((log_dir or run_dir) / f"{arm.name}_seed{seed}.log")
        try:
            result = _run_arm_locked(cfg, arm, seed, data, run_dir, device, amp, cache_dir, progress, runs_dir,
                                     train_key, eval_key, force)
            if archived is not None:
                archived.parent.mkdir(parents=True, exist_ok=True)
                archived.write_text(json.dumps(result, indent=1))
            return result
        finally:
            log.removeHandler(handler)
            handler.close()


def _run_arm_locked(cfg, arm, seed, data, run_dir, device, amp, cache_dir, progress, runs_dir, train_key, eval_key,
                    force):
    model_path = run_dir / "model.pt"
    meta_path = run_dir / "train.json"
    if force:
        for p in (model_path, meta_path, run_dir / "ckpt.pt", run_dir / "result.json"):
            p.unlink(missing_ok=True)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if meta is not None and (meta.get("train_key") != train_key or meta.get("arm") != arm.to_dict()
                             or not model_path.is_file()):
        meta = None
    _, keys = _load_model(cfg)
    if meta is None:
        if not arm.train:
            model, _ = _load_model(cfg)
            info: dict[str, Any] = {"history": [], "train_seconds": 0.0, "trainable_parameters": 0}
        else:
            extra = deepaugment_data(cfg, data, runs_dir / "_cache", device, progress) if arm.deepaugment else None
            model, info = _train(cfg, arm, seed, data, run_dir, device, amp, extra, progress)
        state = export_state_dict(model, keys)
        tmp = model_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(model_path)
        meta = {"arm": arm.to_dict(), "seed": seed, "train_key": train_key, "train": cfg.train_key(),
                "sha256": sha256_file(model_path), "code": code_version(), **info}
        meta_path.write_text(json.dumps(meta, indent=1))
        (run_dir / "ckpt.pt").unlink(missing_ok=True)
        log.info("exported %s (sha256 %s)", model_path, meta["sha256"])
    from .eval import load_model

    model, _, _ = load_model(cfg.model, model_path)
    ev = _evaluate(model, cfg, data, device, amp, f"{arm.name}/seed{seed}", run_dir / "eval", cache_dir, progress)
    result = {"arm": arm.to_dict(), "seed": seed, "model": cfg.model, "train_key": train_key, "eval_key": eval_key,
              "model_path": str(model_path), "sha256": meta["sha256"], "train_seconds": meta["train_seconds"],
              "trainable_parameters": meta["trainable_parameters"],
              "final_loss": meta["history"][-1] if meta["history"] else None, **ev,
              "code": meta.get("code"), "eval_code": code_version(),
              "finished": _dt.datetime.now().isoformat(timespec="seconds")}
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    log.info("%s seed %d: clean(JPEG) %.2f%%  lossless %s  mCA %.2f%%  (train %.0fs, eval %.0fs)", arm.name, seed,
             100 * result["clean_acc_jpeg"],
             f"{100 * result['clean_acc_lossless']:.2f}%" if "clean_acc_lossless" in result else "n/a",
             100 * result["mca"], result["train_seconds"], result["eval_seconds"])
    return result


# ------------------------------------------------------------------------------------------------ the table
_COLUMNS = (("clean_acc_jpeg", "clean JPEG test"), ("clean_acc_lossless", "clean lossless-1k"),
            ("jpeg_gap", "lossless - JPEG (same 1k)"), ("mca", "mCA (all evaluated)"),
            ("mca_benchmark15", "mCA (benchmark 15)"))


def _stat(values: list[float]) -> dict[str, float | int]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def aggregate(results: list[dict[str, Any]], cfg: RecipeConfig, output: Path, arm_order: Sequence[str],
              commands: Sequence[str] = (), jobs: Sequence[tuple[ArmConfig, int]] = ()) -> dict[str, Any]:
    """Write ``results.json``, ``results.md``, ``results.png`` (and ``sha256.txt``) in ``output`` from run results."""
    output.mkdir(parents=True, exist_ok=True)
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_arm.setdefault(r["arm"]["name"], []).append(r)
    order = list(dict.fromkeys([a for a in arm_order if a in by_arm] + sorted(set(by_arm) - set(arm_order))))
    table: dict[str, Any] = {}
    for a in order:
        rs = sorted(by_arm[a], key=lambda r: r["seed"])
        row: dict[str, Any] = {"seeds": [r["seed"] for r in rs], "description": rs[0]["arm"].get("description", "")}
        for key, _ in _COLUMNS:
            vals = [r[key] for r in rs if r.get(key) is not None]
            if vals:
                row[key] = _stat(vals)
        corr = sorted({c for r in rs for c in r["per_corruption"]})
        row["per_corruption"] = {c: _stat([r["per_corruption"][c] for r in rs if c in r["per_corruption"]])
                                 for c in corr}
        row["train_seconds"] = _stat([r["train_seconds"] for r in rs])
        row["eval_seconds"] = _stat([r["eval_seconds"] for r in rs])
        row["sha256"] = {f"seed{r['seed']}": r["sha256"] for r in rs}
        row["code"] = sorted({_commit_label(r.get("code")) for r in rs})
        table[a] = row
    checks = _hypotheses(table, by_arm)
    done = {(r["arm"]["name"], r["seed"]) for r in results}
    missing = [f"{a.name}/seed{s}" for a, s in jobs if (a.name, s) not in done]
    doc = {"benchmark": "cifar10", "config": cfg.to_dict(), "arms": table, "hypotheses": checks, "missing": missing,
           "runs": [{k: v for k, v in r.items() if k != "accuracy"} for r in results],
           "written": _dt.datetime.now().isoformat(timespec="seconds")}
    (output / "results.json").write_text(json.dumps(doc, indent=1))
    (output / "results.md").write_text(format_table(doc, commands))
    (output / "sha256.txt").write_text("".join(f"{r['sha256']}  {r['arm']['name']}/seed{r['seed']}/model.pt\n"
                                               for a in order for r in sorted(by_arm[a], key=lambda r: r["seed"])))
    try:
        plot_table(doc, output / "results.png")
    except Exception as err:  # plotting is a convenience; the numbers are in the JSON
        log.warning("could not write results.png: %s", err)
    return doc


def _commit_label(code: dict[str, Any] | None) -> str:
    """``abc1234`` (``+dirty`` when the package differed from it), or ``unrecorded`` for runs from before commits
    were recorded."""
    if not code or not code.get("commit"):
        return "unrecorded"
    return code["commit"][:7] + ("+dirty" if code.get("dirty") else "")


def _delta(table: dict[str, Any], a: str, b: str, key: str) -> float | None:
    if a in table and b in table and key in table[a] and key in table[b]:
        return table[a][key]["mean"] - table[b][key]["mean"]
    return None


def _paired(by_arm: dict[str, list[dict[str, Any]]], a: str, b: str) -> dict[str, Any] | None:
    """Per-seed differences ``a - b`` over the seeds both arms finished (the same seed means the same batches and
    augmentation draws, so the pairing removes most of the batch-order noise)."""
    ra, rb = ({r["seed"]: r for r in by_arm.get(x, [])} for x in (a, b))
    seeds = sorted(set(ra) & set(rb))
    if not seeds:
        return None
    d_mca = [ra[s]["mca"] - rb[s]["mca"] for s in seeds]
    d_clean = [ra[s]["clean_acc_jpeg"] - rb[s]["clean_acc_jpeg"] for s in seeds]
    return {"seeds": seeds, "delta_mca": _stat(d_mca), "delta_clean_jpeg": _stat(d_clean),
            "mca_up": sum(d > 0 for d in d_mca)}


# hypothesis key -> (arm, its control, label); the first also bounds the clean cost (0.5 points)
_HYPOTHESES = {
    "advbn_vs_standard": ("advbn", "standard", "AdvBN vs standard"),
    "augmix_advbn_vs_augmix": ("augmix_advbn", "augmix", "AugMix + AdvBN vs AugMix"),
    "mixstyle_vs_standard": ("mixstyle", "standard", "MixStyle vs standard"),
    "dsu_vs_standard": ("dsu", "standard", "DSU vs standard"),
    "advbn_vs_mixstyle": ("advbn", "mixstyle", "AdvBN vs MixStyle"),
    "advbn_vs_dsu": ("advbn", "dsu", "AdvBN vs DSU"),
    "deepaugment_augmix_advbn_vs_deepaugment_augmix": ("deepaugment_augmix_advbn", "deepaugment_augmix",
                                                       "DeepAugment + AugMix + AdvBN vs DeepAugment + AugMix"),
}


def _hypotheses(table: dict[str, Any], by_arm: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (a, b, _) in _HYPOTHESES.items():
        d_mca, d_clean = _delta(table, a, b, "mca"), _delta(table, a, b, "clean_acc_jpeg")
        if d_mca is None:
            continue
        holds = d_mca > 0
        if key == "advbn_vs_standard":
            holds = holds and d_clean is not None and d_clean >= -0.005
        out[key] = {"delta_mca": d_mca, "delta_clean_jpeg": d_clean, "holds": bool(holds)}
        paired = _paired(by_arm or {}, a, b)
        if paired is not None:
            out[key]["paired"] = paired
    return out


def confidence_interval(stat: dict[str, Any], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval for the mean of ``n`` paired differences (``_stat`` dict); ``None`` for ``n < 2``."""
    from scipy import stats

    n = int(stat["n"])
    if n < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * stat["std"] / n ** 0.5
    return stat["mean"] - half, stat["mean"] + half


def _interval_text(name: str, stat: dict[str, Any]) -> str:
    ci = confidence_interval(stat)
    if ci is None:
        return f"{name} {100 * stat['mean']:+.2f} (one seed: no interval)"
    lo, hi = 100 * ci[0], 100 * ci[1]
    verdict = "excludes 0" if lo > 0 or hi < 0 else "includes 0"
    return f"{name} {100 * stat['mean']:+.2f} [95% CI {lo:+.2f}, {hi:+.2f}; {verdict}]"


def _paired_text(v: dict[str, Any]) -> str:
    p = v.get("paired")
    if not p:
        return ""
    n = len(p["seeds"])
    return (f" Paired by seed ({n} seed{'s' if n != 1 else ''}): {_interval_text('Δ mCA', p['delta_mca'])}, "
            f"{_interval_text('Δ clean', p['delta_clean_jpeg'])}; mCA higher in {p['mca_up']} of {n} seeds.")


def _fmt(stat: dict[str, Any] | None, signed: bool = False) -> str:
    if not stat:
        return "-"
    sign = "+" if signed else ""
    s = f"{100 * stat['mean']:{sign}.2f}"
    return s + (f" ± {100 * stat['std']:.2f}" if stat["n"] > 1 else "")


def format_table(doc: dict[str, Any], commands: Sequence[str] = ()) -> str:
    cfg = doc["config"]
    lines = ["# CIFAR-10 recipe: AdvBN and image-space augmentation", "",
             f"Model {cfg['model']} (pretrained; {', '.join(prefix_names(cfg['advbn']['layer']))} frozen in every "
             f"arm); {cfg['steps']} steps x "
             f"{cfg['batch_size']} images, SGD lr {cfg['lr']} (x{cfg['decay_rate']} after {cfg['decay_at']:.0%}), "
             f"training subset {cfg['train_subset'] or 'all'}; corruptions: {cfg['eval_images']} test images, "
             f"{'all 19' if cfg['corruptions'] == 'all' else len(cfg['corruptions'])} corruptions x severities "
             f"{cfg['severities']}. Accuracies in %, mean ± std over seeds.", "",
             "| arm | seeds | " + " | ".join(t for _, t in _COLUMNS) + " | Δ mCA vs standard | train s/run | "
             "train cost vs standard | code |",
             "|---|---|" + "---|" * len(_COLUMNS) + "---|---|---|---|"]
    arms = doc["arms"]
    base = arms.get("standard", {}).get("mca")
    base_s = arms.get("standard", {}).get("train_seconds", {}).get("mean")
    for a, row in arms.items():
        cells = [_fmt(row.get(k), signed=k == "jpeg_gap") for k, _ in _COLUMNS]
        dm = "-"
        if base is not None and "mca" in row and a != "standard":
            dm = f"{100 * (row['mca']['mean'] - base['mean']):+.2f}"
        secs = row["train_seconds"]["mean"]
        cost = f"{secs / base_s:.2f}x" if base_s and secs else "-"
        code = ", ".join(row.get("code", [])) or "unrecorded"
        lines.append(f"| {a} | {len(row['seeds'])} | " + " | ".join(cells)
                     + f" | {dm} | {secs:.0f} | {cost} | {code} |")
    lines += ["", "## Hypotheses", ""]
    h = doc["hypotheses"]
    for key, (_, _, label) in _HYPOTHESES.items():
        if key not in h:
            continue
        v = h[key]
        head = (f"- {label}: Δ mCA {100 * v['delta_mca']:+.2f}, Δ clean (JPEG test) "
                f"{100 * v['delta_clean_jpeg']:+.2f} → ")
        if key == "advbn_vs_standard":
            head += f"hypothesis (mCA up, clean cost ≤ 0.5) **{'holds' if v['holds'] else 'does not hold'}**"
        else:
            head += f"**{'better' if v['holds'] else 'not better'}** in mCA"
        lines.append(head + " on these means." + _paired_text(v))
    if not h:
        lines.append("- not enough finished arms yet.")
    missing = doc.get("missing", [])
    lines += ["", f"Runs still missing ({len(missing)}): " + (", ".join(missing) if missing else "none") + "."]
    corr = sorted({c for row in arms.values() for c in row["per_corruption"]})
    if corr:
        lines += ["", "## Per corruption (mean over severities and seeds, %)", "",
                  "| corruption | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
        for c in corr:
            lines.append(f"| {c} | " + " | ".join(_fmt(row["per_corruption"].get(c)) for row in arms.values()) + " |")
    lines += ["", "## Exported models (sha256)", ""]
    for a, row in arms.items():
        for s, h256 in row["sha256"].items():
            lines.append(f"- `{a}/{s}/model.pt`: `{h256}`")
    if commands:
        lines += ["", "## Commands", "", "```"] + list(commands) + ["```"]
    return "\n".join(lines) + "\n"


def plot_table(doc: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = doc["arms"]
    names = list(arms)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    xs = np.arange(len(names))
    for off, (key, label) in zip((-0.2, 0.2), (("clean_acc_jpeg", "clean (JPEG test)"), ("mca", "mCA"))):
        means = [100 * arms[a][key]["mean"] if key in arms[a] else np.nan for a in names]
        stds = [100 * arms[a][key]["std"] if key in arms[a] else 0 for a in names]
        axes[0].bar(xs + off, means, 0.4, yerr=stds, capsize=3, label=label)
    axes[0].set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
    axes[0].set_ylabel("accuracy (%)")
    vals = [100 * arms[a][k]["mean"] for a in names for k in ("clean_acc_jpeg", "mca") if k in arms[a]]
    if vals:
        axes[0].set_ylim(max(0, min(vals) - 10), min(100, max(vals) + 5))
    axes[0].legend()
    axes[0].set_title("clean vs corruption accuracy (mean ± std over seeds)")
    corr = sorted({c for a in names for c in arms[a]["per_corruption"]})
    for a in names:
        axes[1].plot(range(len(corr)), [100 * arms[a]["per_corruption"][c]["mean"] if c in arms[a]["per_corruption"]
                                        else np.nan for c in corr], marker="o", ms=3, label=a)
    axes[1].set_xticks(range(len(corr)), corr, rotation=60, ha="right", fontsize=7)
    axes[1].set_ylabel("accuracy (%)")
    axes[1].set_title("per corruption (mean over severities)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ driver
def _resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} requested but CUDA is not available: pass --device cpu")
    return dev


def run_recipe(cfg: RecipeConfig, *, output: str | Path, runs_dir: str | Path, data_dir: str | Path | None = None,
               arms_dir: str | Path | None = None, device: str | None = None, amp: bool = True,
               cache_dir: str | None = None, progress: bool = True, force: bool = False,
               commands: Sequence[str] = (), collect_only: bool = False) -> dict[str, Any]:
    """Run every (arm, seed) of ``cfg`` (skipping finished ones), rewriting the table after each; returns it.
    ``collect_only``: run nothing, only rewrite the table from the finished runs."""
    arms = load_arms(arms_dir)
    unknown = [a for a in cfg.arms if a not in arms]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; known arms: {list(arms)}")
    output, runs_dir = Path(output), Path(runs_dir)
    archive = output / "runs"
    code_version()  # the commit of the code this process runs, read before any work
    jobs = [(arms[a], s) for s in cfg.seeds for a in cfg.arms if arms[a].train or s == cfg.seeds[0]]
    if collect_only:
        found = _collect(cfg, jobs, runs_dir, archive)
        log.info("%d of %d runs finished", len(found), len(jobs))
        return aggregate(found, cfg, output, [a.name for a, _ in jobs], commands, jobs) if found else {}
    dev = _resolve_device(device)
    log_dir = output / "logs"
    data = RecipeData(cfg, data_dir)
    log.info("data: %d training images, %d clean test images, %d corruption images, lossless %s", len(data.train_x),
             len(data.test_x), len(data.eval_x), "n/a" if data.lossless_x is None else len(data.lossless_x))
    results: list[dict[str, Any]] = []
    doc: dict[str, Any] = {}

    def collect() -> list[dict[str, Any]]:
        return _collect(cfg, jobs, runs_dir, archive)

    for arm, seed in jobs:
        r = run_arm(cfg, arm, seed, data, runs_dir, device=dev, amp=amp, cache_dir=cache_dir, progress=progress,
                    force=force, log_dir=log_dir, archive_dir=archive)
        if r is not None:
            results = collect()
            doc = aggregate(results, cfg, output, [a.name for a, _ in jobs], commands, jobs)
    results = collect()
    if results:
        doc = aggregate(results, cfg, output, [a.name for a, _ in jobs], commands, jobs)
    missing = len(jobs) - len(results)
    if missing:
        log.info("%d of %d runs are not finished (held by another process?): rerun the command to collect them",
                 missing, len(jobs))
    return doc


def _collect(cfg: RecipeConfig, jobs: Sequence[tuple[ArmConfig, int]], runs_dir: Path,
             archive: Path | None = None) -> list[dict[str, Any]]:
    """The finished results (same settings) of ``jobs``: from ``runs_dir``, else from the committed ``archive``."""
    found = []
    for arm, s in jobs:
        for root in (runs_dir, archive):
            r = _finished(root / arm.name / f"seed{s}" / "result.json", cfg, arm) if root is not None else None
            if r is not None:
                found.append(r)
                break
    return found


def short_table(doc: dict[str, Any]) -> str:
    rows = [f"{'arm':<26} {'seeds':>5} {'clean':>14} {'lossless':>14} {'mCA':>14}"]
    for a, row in doc.get("arms", {}).items():
        rows.append(f"{a:<26} {len(row['seeds']):>5} {_fmt(row.get('clean_acc_jpeg')):>14} "
                    f"{_fmt(row.get('clean_acc_lossless')):>14} {_fmt(row.get('mca')):>14}")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=BENCHMARKS + ("imagenet",), help="recipe to run (cifar10; imagenet "
                        "recipes are shell commands in recipes/imagenet/)")
    parser.add_argument("--tiny", action="store_true", help="toy scale (< 5 min on CPU): same pipeline, short table "
                        "(= --preset tiny)")
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None,
                        help="named settings: full (the default: the paper's lr 0.001 over one pass of the 50,000 "
                        "training images, 5 seeds), short (the first tables: lr 0.01, 100 steps from 5,000 images, "
                        "3 seeds), tiny")
    parser.add_argument("--config", default=None, help="recipe YAML (RecipeConfig keys); flags override it")
    parser.add_argument("--arms", nargs="+", default=None, help=f"arms to run (default: all: {' '.join(ARM_ORDER)})")
    parser.add_argument("--arms-dir", default=None, help="folder of arm YAML files (adds/overrides built-in arms)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (default 0 1 2 3 4)")
    parser.add_argument("--model", default=None, choices=("resnet20", "resnet56"))
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (shared *_jpeg.npz or torchvision's "
                        "cifar-10-batches-py); default: ../shared/data or $ADVBN_DATA")
    parser.add_argument("--output", default=None, help="results folder (default recipes/cifar10/results; with "
                                                       "--tiny runs/cifar10-tiny, untracked)")
    parser.add_argument("--runs-dir", default=None, help="runs folder (default recipes/cifar10/runs; with --tiny "
                                                         "runs/cifar10-tiny/runs)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run")
    parser.add_argument("-b", "--batch-size", type=int, default=None, help="clean images per step")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--momentum", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--decay-rate", type=float, default=None, help="lr factor after --decay-at")
    parser.add_argument("--decay-at", type=float, default=None, help="fraction of the steps where lr decays")
    parser.add_argument("--train-subset", type=int, default=None, help="class-balanced training subset size")
    parser.add_argument("--eval-images", type=int, default=None, help="test images corrupted for CIFAR-10-C")
    parser.add_argument("--corruptions", default=None, help="comma list, 'all' (19) or 'benchmark' (15)")
    parser.add_argument("--severities", nargs="+", type=int, default=None)
    parser.add_argument("--clean-test-images", type=int, default=None, help="JPEG test images for clean accuracy")
    parser.add_argument("--eval-batch-size", type=int, default=None)
    parser.add_argument("--checkpoint-interval", type=int, default=None)
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    parser.add_argument("--no-amp", action="store_true", help="disable AMP (float16 autocast) on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--cache-dir", default=None, help="corruption cache (default ~/.cache/advbn_aug/corruptions)")
    parser.add_argument("--force", action="store_true", help="redo finished runs")
    parser.add_argument("--collect", action="store_true", help="run nothing: rewrite the table from finished runs")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    from .advbn_config import AdvBNConfig
    from .config_cli import UNSET, add_config_arguments

    group = parser.add_argument_group("AdvBN", "settings of the AdvBN arms (the recipe's advbn; the prefix up to "
                                      "the layer is always frozen)")
    add_config_arguments(group, AdvBNConfig, prefix="advbn-", exclude=("freeze_prefix",), defaults=UNSET)


def default_folders(tiny: bool, preset: str = "full") -> tuple[Path, Path]:
    """``(output, runs_dir)`` when no flag names them: the committed table's folders for the full recipe
    (``recipes/cifar10/results/short`` for the short preset); for ``--tiny`` (the README's smoke run) folders under
    ``runs/`` that git ignores, so it never touches tracked files."""
    if tiny or preset == "tiny":
        return Path("runs/cifar10-tiny"), Path("runs/cifar10-tiny/runs")
    if preset == "short":
        return Path("recipes/cifar10/results/short"), Path("recipes/cifar10/runs/short")
    return Path("recipes/cifar10/results"), Path("recipes/cifar10/runs")


def config_from_args(args: argparse.Namespace) -> RecipeConfig:
    if args.tiny and args.preset not in (None, "tiny"):
        from .config_cli import ConfigArgumentError

        raise ConfigArgumentError(f"--tiny and --preset {args.preset} contradict each other: pass one")
    base = TINY if args.tiny else PRESETS[args.preset or "full"]
    if args.config:
        if not Path(args.config).is_file():
            raise FileNotFoundError(f"--config {args.config} does not exist")
        base = RecipeConfig.from_yaml(Path(args.config))
    from .advbn_config import AdvBNConfig
    from .config_cli import config_from_args as advbn_from_args
    from .config_cli import config_values

    advbn = config_values(args, AdvBNConfig, prefix="advbn-")  # only the flags given
    if advbn:
        advbn_from_args(args, AdvBNConfig, prefix="advbn-", base=AdvBNConfig.from_dict(dict(base.advbn)))
    corruptions = args.corruptions
    if corruptions is not None and corruptions not in ("all", "benchmark"):
        corruptions = [c.strip() for c in corruptions.split(",") if c.strip()]
    return base.with_overrides(arms=args.arms, seeds=args.seeds, model=args.model, steps=args.steps,
                               batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                               weight_decay=args.weight_decay, decay_rate=args.decay_rate, decay_at=args.decay_at,
                               train_subset=args.train_subset, advbn=advbn or None, eval_images=args.eval_images,
                               corruptions=corruptions, severities=args.severities,
                               clean_test_images=args.clean_test_images, eval_batch_size=args.eval_batch_size,
                               checkpoint_interval=args.checkpoint_interval)


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "imagenet":
        print("The ImageNet recipe needs ImageNet and GPUs: see recipes/imagenet/README.md for its commands "
              "(advbn-aug train).", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    from .eval.corruptions import resolve_corruptions

    resolve_corruptions(cfg.corruptions)  # fail early on a bad name
    default_output, default_runs = default_folders(args.tiny, args.preset or "full")
    output = Path(args.output or default_output)
    runs_dir = Path(args.runs_dir or default_runs)
    (output / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(output / "logs" / "recipe.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.addHandler(console)
    log.setLevel(logging.INFO)
    command = "advbn-aug recipe " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "recipe" else "advbn-aug recipe (library call)"
    with open(output / "logs" / "commands.log", "a") as f:
        f.write(f"{_dt.datetime.now().isoformat(timespec='seconds')} cwd={os.getcwd()} {command}\n")
    history = (output / "logs" / "commands.log").read_text().splitlines()
    commands = list(dict.fromkeys(line.split(" ", 2)[-1] for line in history if line.strip()))
    (output / "config.yaml").write_text(cfg.to_yaml())
    try:
        t0 = time.perf_counter()
        doc = run_recipe(cfg, output=output, runs_dir=runs_dir, data_dir=args.data_dir, arms_dir=args.arms_dir,
                         device=args.device, amp=not args.no_amp, cache_dir=args.cache_dir,
                         progress=not args.no_progress, force=args.force, commands=commands,
                         collect_only=args.collect)
        print(short_table(doc))
        print(f"results: {output / 'results.md'} ({time.perf_counter() - t0:.0f}s)")
    finally:
        log.removeHandler(handler)
        log.removeHandler(console)
        handler.close()
    return 0
