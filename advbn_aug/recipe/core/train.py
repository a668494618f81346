"""Fine-tuning one arm: the arm's policy, the learning-rate schedule, the resumable training loop, the weight
average, and the export of a plain ``state_dict``. The loop is shared by the benchmarks; the model, its frozen
prefix, the training-time augmentation and the normalisation come from the config's
:class:`~advbn_aug.recipe.core.benchmark.Benchmark`."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advbn_aug.recipe.core.benchmark import benchmark_of
from advbn_aug.recipe.core.config import ArmConfig, digest
from advbn_aug.recipe.core.ema import WeightAverage

__all__ = ["train_arm", "load_fresh_model", "prefix_modules_of", "export_state_dict", "sha256_file",
           "deterministic_algorithms"]

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)


def load_fresh_model(cfg: Any) -> tuple[nn.Module, list[str]]:
    """The benchmark's pretrained model and the keys its export keeps."""
    return benchmark_of(cfg).load_model(cfg)


def prefix_modules_of(model: nn.Module, cfg: Any) -> list[nn.Module]:
    """The modules every arm of ``cfg``'s benchmark freezes (the prefix up to the AdvBN layer)."""
    return benchmark_of(cfg).prefix_modules(model, cfg)


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
    """The sha256 hex digest of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _build_policy(cfg: Any, arm: ArmConfig):
    from advbn_aug.image import AugMixConfig
    from advbn_aug.policy import Policy, PolicyConfig

    features = []
    if arm.advbn:
        features.append({"type": "advbn", **cfg.advbn, **arm.advbn_options, "freeze_prefix": True})
    features += [dict(spec) for spec in arm.features]
    pc = PolicyConfig(augmix=AugMixConfig.from_dict(dict(cfg.augmix)).to_dict() if arm.augmix else None,
                      features=features, jsd_weight=cfg.jsd_weight, mean=list(benchmark_of(cfg).mean),
                      std=list(benchmark_of(cfg).std))
    return Policy(pc)


def _lr_at(cfg: Any, step: int) -> float:
    return cfg.lr * (cfg.decay_rate if step >= int(round(cfg.decay_at * cfg.steps)) else 1.0)


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Inside the block: PyTorch's deterministic algorithms (warn-only where an op has none) and no cuDNN
    autotuning; the previous settings come back afterwards. With the same seed, thread count, torch build and
    machine, a run then gives bit-identical weights (``tests/recipe/cifar10/test_recipe.py`` checks it on CPU)."""
    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.benchmark = prev[2]


def _read_resume_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The resume checkpoint ``ckpt.pt`` of a run; an unreadable one (empty, truncated, not a dict) raises
    :class:`~advbn_aug.eval.checkpoint.CheckpointError` naming it and the remedy, rather than being dropped with
    the training it holds."""
    from advbn_aug.eval.checkpoint import CheckpointError, load_checkpoint_file

    fix = (f"delete it to restart this run from step 0 (the steps trained so far are lost), or put back an intact "
           f"copy; the run folder is {path.parent}")
    ck = load_checkpoint_file(path, fix=fix, what="resume checkpoint", map_location=device, weights_only=False)
    if not isinstance(ck, dict):
        raise CheckpointError(path, f"holds a {type(ck).__name__}, not the recipe's checkpoint dict", fix,
                              "resume checkpoint")
    return ck


def train_arm(cfg: Any, arm: ArmConfig, seed: int, data: Any, run_dir: Path, device: torch.device, amp: bool,
              extra: tuple[np.ndarray, np.ndarray] | None, progress: bool) -> tuple[nn.Module, dict]:
    """Fine-tune ``arm`` with ``seed`` on ``data.train_x`` / ``train_y`` (uint8 NHWC, and ``extra`` images added to
    the pool), resuming from ``run_dir/ckpt.pt`` when it holds this training; writes ``model_adv.pt`` (AdvBN arms)
    and the weight average (``ema_decay``) to ``run_dir``. Returns the plain model (CPU, eval mode) and the facts
    ``train.json`` records (loss history, seconds, trainable parameters, ...)."""
    bench = benchmark_of(cfg)
    model, keys = bench.load_model(cfg)
    for m in bench.prefix_modules(model, cfg):
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
    ema = _weight_average(cfg, model)
    ckpt_path = run_dir / "ckpt.pt"
    if ckpt_path.is_file():
        ck = _read_resume_checkpoint(ckpt_path, device)
        if (ck.get("train_key") == digest(cfg.train_key()) and ck.get("arm") == arm.to_dict()
                and (ema is None or "ema" in ck)):
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            scaler.load_state_dict(ck["scaler"])
            if ema is not None:
                ema.load_state_dict(ck["ema"])
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
        x = bench.augment(x, cfg)
        model.train()
        for m in bench.prefix_modules(model, cfg):
            m.eval()
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            loss, info = policy.step(model, x, y, epoch=0, step=step)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            ema.update(model)  # reads the model only: no random numbers, no change to the training
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
                        "train_key": digest(cfg.train_key()), **({} if ema is None else {"ema": ema.state_dict()})},
                       tmp)
            tmp.replace(ckpt_path)
    bar.close()
    train_seconds += time.perf_counter() - t0
    if arm.advbn:  # the adversarial-BatchNorm route, for evaluating through it (the paper's route for style shifts)
        from advbn_aug.feature.dual_norm import select_bn_state

        adv = select_bn_state(model.state_dict(), "adv")
        tmp = (run_dir / "model_adv.pt").with_suffix(".tmp")
        torch.save({k: adv[k].detach().cpu().clone().contiguous() for k in keys}, tmp)
        tmp.replace(run_dir / "model_adv.pt")
    info: dict[str, Any] = {}
    if ema is not None:
        info["ema"] = _export_average(ema, keys, run_dir, arm.advbn)
    plain = policy.detach()
    for p in plain.parameters():
        p.requires_grad_(True)
    return plain.cpu().eval(), {"history": history, "train_seconds": round(train_seconds, 2),
                                "trainable_parameters": n_params, "threads": torch.get_num_threads(),
                                "torch": torch.__version__, **info}


def _weight_average(cfg: Any, model: nn.Module) -> WeightAverage | None:
    """The run's weight average when the config asks for one (``ema_decay``; the CIFAR-10 recipe has none)."""
    decay = getattr(cfg, "ema_decay", None)
    return None if decay is None else WeightAverage(model, decay)


def _export_average(ema: WeightAverage, keys: Sequence[str], run_dir: Path, advbn: bool) -> dict[str, Any]:
    """Write ``model_ema.pt`` (and, for AdvBN arms, ``model_ema_adv.pt``: the average through the adversarial
    BatchNorms); returns ``{"decay", "sha256"[, "sha256_adv"]}`` for ``train.json``."""
    out: dict[str, Any] = {"decay": ema.decay}
    for route, name, field in (("clean", "model_ema.pt", "sha256"), ("adv", "model_ema_adv.pt", "sha256_adv")):
        if route == "adv" and not advbn:
            continue
        tmp = (run_dir / name).with_suffix(".tmp")
        torch.save(ema.export(keys, route), tmp)
        tmp.replace(run_dir / name)
        out[field] = sha256_file(run_dir / name)
    return out
