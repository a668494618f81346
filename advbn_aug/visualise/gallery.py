"""``make_grid``: what AdvBN does, as images. The rows of the grid (``advbn-aug visualise grid``):

input; its reconstruction ``D(g1(x))``; for the reference model (and a second checkpoint, e.g. AdvBN fine-tuned)
one row per (eps, steps) of decoded AdvBN worst cases; decoded MixStyle and DSU draws; a real corruption of the input
and its reconstruction; a style image and the inputs restyled to its channel statistics at the layer (AdaIN),
decoded. Captions give the model's accuracy on the perturbed features and on the decoded images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advbn_aug.eval.corruptions import corrupt
from advbn_aug.visualise.config import GridConfig
from advbn_aug.visualise.grid import GridFiles, Row, write_grid
from advbn_aug.visualise.inverter import FeatureInverter, open_inverter
from advbn_aug.visualise.shifts import SuffixModel, adain, advbn_shift, dsu_shift, mixstyle_shift
from advbn_aug.visualise.source import load_encoder, load_images, read_image, to_tensor, to_uint8
from advbn_aug.visualise.train import psnr

__all__ = ["GridResult", "make_grid", "grid_rows"]

_log = logging.getLogger("advbn_aug")


@dataclass
class GridResult:
    rows: list[Row]
    files: GridFiles | None


def _correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(1) == y).sum())


def _range(t: torch.Tensor) -> str:
    return f"[{float(t.min()):.2f}, {float(t.max()):.2f}]"


def grid_rows(cfg: GridConfig, inv: FeatureInverter, images: np.ndarray, labels: np.ndarray, style: np.ndarray,
              *, ft: FeatureInverter | None = None, style_name: str = "style image") -> list[Row]:
    """The rows for uint8 ``images`` ``(n, H, W, 3)`` with int labels ``(n,)`` and a uint8 ``style`` image
    ``(H, W, 3)``; ``ft``: a second model with the same architecture (its own prefix features, same decoder)."""
    device = torch.device(cfg.device)
    x, y = to_tensor(images, device), torch.as_tensor(labels, device=device)
    n = len(x)

    def on_images(imgs: torch.Tensor, model: FeatureInverter = inv) -> int:
        return _correct(model.classify(imgs), y)

    def decoded(key: str, title: str, what: str, feats: torch.Tensor, model: FeatureInverter = inv,
                logits: torch.Tensor | None = None, **metrics: float) -> Row:
        out = to_uint8(inv.decode(feats))  # what the PNGs show; the model sees the same quantised pixels
        on_dec = on_images(to_tensor(out, device), model)
        on_feat = f"on the perturbed features {_correct(logits, y)}/{n}, " if logits is not None else ""
        caption = f"{what} Model ({model.name}): {on_feat}on the decoded images {on_dec}/{n} correct."
        extra = {"correct_features": _correct(logits, y)} if logits is not None else {}
        return Row(key, title, caption, out, {"correct_decoded": on_dec, **extra, **metrics})

    f = inv.encode(x)
    rec = to_tensor(to_uint8(inv.decode(f)), device)
    rec_psnr = float(psnr(rec, x).mean())
    held = inv.info.get("psnr")
    held_text = (f" The decoder's held-out PSNR is {held:.2f} dB on {inv.info.get('num_holdout', '?')} images."
                 if held is not None else "")
    rows = [Row("input", "input", f"The {n} input images. Model ({inv.name}): {on_images(x)}/{n} correct.", images,
                {"correct": on_images(x)}),
            Row("reconstruction", f"reconstruction ({rec_psnr:.1f} dB)",
                f"D(g1(x)): the decoder's reconstruction from the {inv.layer} features, PSNR {rec_psnr:.2f} dB on "
                f"these images.{held_text} Model: {on_images(rec)}/{n} correct on them.", to_uint8(rec),
                {"psnr_db": round(rec_psnr, 3), "correct_decoded": on_images(rec)})]
    suffixes = {}
    for tag, model in (("ref", inv), ("ft", ft)):
        if model is None:
            continue
        suffixes[tag] = suffix = SuffixModel(model.encoder)
        fm = model.encode(x)
        gap = float((fm - f).abs().max())
        note = "" if tag == "ref" else (
            " Same prefix as the reference model." if gap < 1e-5 else
            f" Its prefix differs from the reference model's (max feature difference {gap:.3g}), so the decoder, "
            "trained on the reference prefix, renders these features less faithfully.")
        for eps in cfg.eps:
            for k in cfg.steps:
                shift = advbn_shift(suffix, fm, x, y, eps=eps, steps=k, step_size=cfg.step_size,
                                    clamp_min=cfg.clamp_min)
                what = (f"AdvBN worst case at {inv.layer} against {model.name}: {k} sign steps of {cfg.step_size} in "
                        f"[1 - {eps:g}, 1 + {eps:g}]; batch-shared multipliers m in {_range(shift.m)}, s in "
                        f"{_range(shift.s)} (clean features: {_correct(shift.clean_logits, y)}/{n} correct).{note}")
                rows.append(decoded(f"advbn_{tag}_eps{eps:g}_steps{k}", f"AdvBN {model.name} eps={eps:g} steps={k}",
                                    what, shift.features, model, shift.adv_logits, eps=eps, steps=k))
    ref = suffixes["ref"]
    with torch.no_grad():
        ms = mixstyle_shift(f, alpha=cfg.mixstyle_alpha, seed=cfg.seed)
        rows.append(decoded("mixstyle", f"MixStyle alpha={cfg.mixstyle_alpha:g}",
                            f"MixStyle at {inv.layer}: each image's channel statistics mixed with a random partner's "
                            f"(lam ~ Beta({cfg.mixstyle_alpha:g}, {cfg.mixstyle_alpha:g}), seed {cfg.seed}).",
                            ms, logits=ref(ms, x)))
        ds = dsu_shift(f, seed=cfg.seed)
        rows.append(decoded("dsu", "DSU", f"DSU at {inv.layer}: statistics resampled with the batch's uncertainty "
                                          f"(seed {cfg.seed}).", ds, logits=ref(ds, x)))
        table = "cifar10" if inv.img_size < 128 else "imagenet"
        xc = corrupt(images, cfg.corruption, cfg.severity, seed=cfg.seed, dataset=table)
        xct = to_tensor(xc, device)
        rows.append(Row("corrupted", f"{cfg.corruption} s{cfg.severity} (input)",
                        f"A real shift for comparison: {cfg.corruption} at severity {cfg.severity} ({table} "
                        f"parameters) applied to the input images. Model: {on_images(xct)}/{n} correct.", xc,
                        {"correct": on_images(xct)}))
        rows.append(decoded("corrupted_reconstruction", f"{cfg.corruption} s{cfg.severity} decoded",
                            "D(g1(corrupted x)): the corrupted images through the prefix and the decoder.",
                            inv.encode(xct)))
        rows.append(Row("style", "style image", f"The style image ({style_name}).", style[None]))
        ad = adain(f, inv.encode(to_tensor(style[None], device)), clamp_min=cfg.clamp_min)
        rows.append(decoded("adain", "AdaIN to style", f"AdaIN at {inv.layer}: each image's channel mean and std "
                                                       "replaced by the style image's, decoded.", ad,
                            logits=ref(ad, x)))
    for s in suffixes.values():
        s.close()
    return rows


def make_grid(config: GridConfig | None = None, *, inverter: FeatureInverter | None = None,
              images: np.ndarray | None = None, labels: np.ndarray | None = None) -> GridResult:
    """Build the rows for ``config`` and write them to ``config.output`` (no files when it is empty).

    ``inverter`` replaces the decoder file; ``images``/``labels`` (uint8 ``(n, H, W, 3)``, int ``(n,)``) replace
    the first ``num_images`` of the configured data (the style image then defaults to the last of them).
    """
    cfg = config or GridConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    source = None
    if inverter is None:
        inverter, source = open_inverter(cfg.decoder, model=cfg.model, layer=cfg.layer, img_size=cfg.img_size,
                                         checkpoint=cfg.checkpoint, device=cfg.device)
    size = inverter.img_size
    if images is None or labels is None:
        xs, ys = load_images(cfg.dataset, cfg.data_dir, cfg.split, size, cfg.num_images + 1)
        images, labels = xs[: cfg.num_images], ys[: cfg.num_images]
        default_style, style_name = xs[-1], f"{cfg.dataset} {cfg.split} image #{len(xs) - 1}"
    else:
        default_style, style_name = images[-1], "the last input image"
    if images.shape[1:3] != (size, size):
        raise ValueError(f"images are {images.shape[1]}x{images.shape[2]} px but the decoder works at {size} px: "
                         f"resize them to {size} px or train a decoder for their size")
    style = read_image(cfg.style_image, size) if cfg.style_image else default_style
    style_name = cfg.style_image or style_name
    ft = None
    if cfg.ft_checkpoint:
        if source is None:
            raise ValueError("ft_checkpoint needs the decoder file (it names the model): drop inverter= or "
                             "ft_checkpoint")
        enc = load_encoder(source.model, cfg.ft_checkpoint, source.layer, size, num_classes=source.num_classes,
                           device=cfg.device)
        ft = FeatureInverter(enc, inverter.decoder, f"{source.model} ({Path(cfg.ft_checkpoint).name})", inverter.info)
    rows = grid_rows(cfg, inverter, images, labels, style, ft=ft, style_name=style_name)
    files = None
    if cfg.output:
        c, h, w = inverter.encoder.feature_shape()
        held = inverter.info.get("psnr")
        intro = (f"{inverter.name} cut at {inverter.layer!r} ({c}x{h}x{w} features of {size} px images); every row "
                 "except the inputs, the corrupted inputs and the style image is decoded from features"
                 + (f"; decoder held-out PSNR {held:.2f} dB on {inverter.info.get('num_holdout', '?')} images."
                    if held is not None else "."))
        files = write_grid(rows, cfg.output, tile=cfg.tile_size, title=f"What AdvBN does at {inverter.layer}: "
                           f"decoded features of {inverter.name}", intro=intro, extra={"config": cfg.to_dict()})
        _log.info("grid written to %s (%d rows)", files.html, len(rows))
    return GridResult(rows, files)
