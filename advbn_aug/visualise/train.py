"""Train a :class:`~advbn_aug.visualise.decoder.FeatureDecoder` to invert a layer of the user's frozen model.

Loss per batch of images ``x`` (RGB in [0, 1]) with features ``f = g1(x)`` and reconstruction ``r = D(f)``::

    MSE(r, x) + perceptual_weight * MSE(g1(r), f) / mean(f ** 2)

the second term being a perceptual loss on the model's own features at the layer (scale-free). Adam with a cosine
learning rate; the state is written to ``<output>/last.pt`` every ``save_every`` steps and resumed from there; at
the end ``<output>/decoder.pt`` and ``metrics.json`` hold the decoder and its held-out PSNR.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from advbn_aug.visualise.config import DecoderConfig
from advbn_aug.visualise.decoder import DecoderSource, FeatureDecoder, decoder_arch_for, save_decoder
from advbn_aug.visualise.source import LayerEncoder, load_encoder, load_images, to_tensor, to_uint8

__all__ = ["TrainResult", "train_decoder", "psnr", "reconstruct", "default_source"]

_log = logging.getLogger("advbn_aug")
# settings that do not change what is trained (a resumed run may differ in them)
_RUNTIME_KEYS = ("device", "threads", "progress", "resume", "save_every", "output")


@dataclass
class TrainResult:
    """A trained decoder with its held-out PSNR (dB), per-epoch mean losses and time (wall / process CPU seconds,
    summed over resumed sessions); ``path``: the decoder file when written."""

    decoder: FeatureDecoder
    source: DecoderSource
    psnr: float
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    num_train: int = 0
    num_holdout: int = 0
    path: Path | None = None


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``x`` against ``y``, both ``(N, 3, H, W)`` in [0, 1]; returns ``(N,)``."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


@torch.no_grad()
def reconstruct(encoder: LayerEncoder, decoder: FeatureDecoder, x: torch.Tensor, batch_size: int = 256
                ) -> torch.Tensor:
    """``D(g1(x))`` for RGB ``x`` ``(N, 3, H, W)`` in [0, 1], batch by batch; same shape."""
    return torch.cat([decoder(encoder(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def default_source(cfg: DecoderConfig) -> tuple[str, str, int]:
    """``(model, layer, img_size)`` with the train-decoder defaults filled in."""
    img_size = cfg.img_size or (32 if cfg.dataset == "cifar10" else 64)
    return cfg.model or "resnet20", str(cfg.layer if cfg.layer is not None else "layer1"), img_size


def _training_images(cfg: DecoderConfig, img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, holdout)`` uint8 arrays: CIFAR-10 train subset / lossless test images, or a split folder."""
    rng = np.random.default_rng(cfg.seed)
    if cfg.dataset == "cifar10":
        x, _ = load_images("cifar10", cfg.data_dir, "train", img_size)
        keep = rng.permutation(len(x))[: cfg.train_images]
        holdout, _ = load_images("cifar10", cfg.data_dir, "test_lossless", img_size, cfg.holdout_images)
        return x[np.sort(keep)], holdout
    x, _ = load_images("folder", cfg.data_dir, "train", img_size)
    if len(x) <= cfg.holdout_images:
        raise ValueError(f"the folder {cfg.data_dir} has {len(x)} images, not more than holdout_images="
                         f"{cfg.holdout_images}: pass a smaller --holdout-images or more images")
    order = rng.permutation(len(x))
    train = order[: len(x) - cfg.holdout_images][: cfg.train_images]
    return x[np.sort(train)], x[order[len(x) - cfg.holdout_images:]]


def _lr(cfg: DecoderConfig, step: int, total: int) -> float:
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / max(1, total))))


def _settings(cfg: DecoderConfig, source: DecoderSource, n_train: int, n_holdout: int) -> dict[str, Any]:
    keep = {k: v for k, v in cfg.to_dict().items() if k not in _RUNTIME_KEYS}
    return {**keep, "source": json.loads(json.dumps(source.__dict__)), "n_train": n_train, "n_holdout": n_holdout}


def _check_images(x: np.ndarray, img_size: int, what: str) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{what} must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    if x.shape[1:3] != (img_size, img_size):
        raise ValueError(f"{what} are {x.shape[1]}x{x.shape[2]} px but the encoder works at {img_size} px: resize "
                         f"them or build the encoder with img_size={x.shape[2]}")


def train_decoder(config: DecoderConfig | None = None, *, encoder: LayerEncoder | None = None,
                  train_x: np.ndarray | None = None, holdout_x: np.ndarray | None = None,
                  model_name: str | None = None) -> TrainResult:
    """Train a decoder for ``config`` (defaults: pretrained CIFAR ResNet-20 at ``layer1``).

    ``encoder`` (your own model cut at a layer) and uint8 ``(N, H, W, 3)`` arrays ``train_x``/``holdout_x`` replace
    what the config would load; ``model_name`` then names the model in the decoder file. Writes to
    ``config.output`` unless it is empty.
    """
    cfg = config or DecoderConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, layer, img_size = default_source(cfg)
    if encoder is None:
        encoder = load_encoder(model, cfg.checkpoint, layer, img_size, num_classes=cfg.num_classes,
                               device=cfg.device)
    img_size = encoder.img_size
    if train_x is None or holdout_x is None:
        train_x, holdout_x = _training_images(cfg, img_size)
    _check_images(train_x, img_size, "training images")
    _check_images(holdout_x, img_size, "held-out images")
    source = DecoderSource(model_name or model, cfg.checkpoint, encoder.layer, img_size, encoder.mean, encoder.std,
                           cfg.num_classes, cfg.dataset)
    device = torch.device(cfg.device)
    decoder = FeatureDecoder(decoder_arch_for(encoder.feature_shape(), img_size, width=cfg.width, blocks=cfg.blocks,
                                              layer=f"layer {encoder.layer!r}")).to(device)
    with torch.no_grad():
        decoder.set_feature_stats(encoder(to_tensor(train_x[:512], device)))
    opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
    n, bs = len(train_x), cfg.batch_size
    per_epoch = math.ceil(n / bs)
    total = cfg.epochs * per_epoch
    out = Path(cfg.output) if cfg.output else None
    settings = _settings(cfg, source, n, len(holdout_x))
    step, losses, seconds, cpu_seconds, running = 0, [], 0.0, 0.0, 0.0
    if out is not None and cfg.resume and (out / "last.pt").is_file():
        state = torch.load(out / "last.pt", map_location=device, weights_only=True)
        if state.get("settings") == settings:
            decoder.load_state_dict(state["decoder"])
            opt.load_state_dict(state["optimizer"])
            step, losses, running = int(state["step"]), list(state["losses"]), float(state["running"])
            seconds, cpu_seconds = float(state["seconds"]), float(state["cpu_seconds"])
            _log.info("resuming decoder training at step %d of %d from %s", step, total, out / "last.pt")
        else:
            _log.info("ignoring %s: it was written with other settings", out / "last.pt")
    _log.info("decoder for %s at %r: %d training images, %d held out, %d steps, %s", source.model, source.layer, n,
              len(holdout_x), total, decoder.arch)

    def save_state() -> None:
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"settings": settings, "decoder": decoder.state_dict(), "optimizer": opt.state_dict(),
                    "step": step, "losses": losses, "running": running, "seconds": seconds,
                    "cpu_seconds": cpu_seconds}, out / "last.tmp")
        (out / "last.tmp").replace(out / "last.pt")

    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    decoder.train()
    t0, c0 = time.perf_counter(), time.process_time()
    with logging_redirect_tqdm(), tqdm(total=total, initial=step, desc="train decoder", unit="step",
                                       disable=not cfg.progress, dynamic_ncols=True) as bar:
        while step < total:
            epoch, i = divmod(step, per_epoch)
            order = np.random.default_rng([cfg.seed, epoch]).permutation(n)
            x = to_tensor(train_x[np.sort(order[i * bs:(i + 1) * bs])], device)
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step, total)
            with torch.no_grad():
                f = encoder(x)
            r = decoder(f)
            loss = F.mse_loss(r, x)
            if cfg.perceptual_weight > 0:
                loss = loss + cfg.perceptual_weight * F.mse_loss(encoder(r), f) / f.pow(2).mean().clamp_min(1e-8)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item()
            step += 1
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{running / max(1, step % per_epoch or per_epoch):.4f}")
            if step % per_epoch == 0:
                losses.append(running / per_epoch)
                running = 0.0
                _log.info("decoder epoch %d/%d: mean loss %.5f", epoch + 1, cfg.epochs, losses[-1])
            if step % cfg.save_every == 0 or step % per_epoch == 0 or step == total:
                now_t, now_c = time.perf_counter(), time.process_time()
                seconds, cpu_seconds = seconds + now_t - t0, cpu_seconds + now_c - c0
                t0, c0 = now_t, now_c
                save_state()
    seconds, cpu_seconds = seconds + time.perf_counter() - t0, cpu_seconds + time.process_time() - c0
    decoder.eval()
    hold = to_tensor(holdout_x, device)
    rec = to_tensor(to_uint8(reconstruct(encoder, decoder, hold)), device)  # scored as saved: 8-bit pixels
    score = float(psnr(rec, hold).mean())
    result = TrainResult(decoder, source, score, losses, step, round(seconds, 1), round(cpu_seconds, 1), n,
                         len(holdout_x))
    if out is not None:
        metrics = {"psnr_db": round(score, 3), "num_holdout": len(holdout_x), "num_train": n, "steps": step,
                   "epoch_losses": [round(v, 6) for v in losses], "train_seconds": result.seconds,
                   "train_cpu_seconds": result.cpu_seconds, "threads": torch.get_num_threads(),
                   "config": cfg.to_dict(), "source": settings["source"]}
        result.path = save_decoder(out / "decoder.pt", decoder, source, psnr=score, num_holdout=len(holdout_x),
                                   train_seconds=result.seconds, train_cpu_seconds=result.cpu_seconds)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _log.info("decoder held-out PSNR %.2f dB on %d images", score, len(holdout_x))
    return result
