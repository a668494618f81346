"""The ONNX style network (advbn_aug.eval.style_network) on tiny exported models, where onnxruntime is installed."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from advbn_aug.eval.style_network import OnnxStyleNetwork
from advbn_aug.eval.stylized import open_network, stylized_set

from ._stylized_toy import toy_content, toy_pool


class _TinyPredict(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 16, 16, 3) -> (N, 1, 1, 4), like Magenta's predictor
        m = x.mean(dim=(1, 2), keepdim=True)
        return torch.cat([m, m[..., :1] * 2 - 1], dim=-1)


class _TinyTransform(torch.nn.Module):
    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # (N, 24, 24, 3), (N, 1, 1, 4)
        return torch.sigmoid(x * 3 - 1.5 + v[..., :3] * 0.5 + v[..., 3:])


def _export(module: torch.nn.Module, args: tuple, path: Path, names: list[str], dynamic: bool) -> Path:
    axes = {n: {0: "n"} for n in [*names, "out"]} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, output_names=["out"], dynamic_axes=axes,
                          dynamo=False)
    return path


@pytest.fixture
def onnx_models(tmp_path):
    """Tiny predictor / transformer ONNX files: ``fixed/`` with batch 1 (as the package's), ``dynamic/``."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")  # torch.onnx.export needs it
    out = {}
    for kind in ("fixed", "dynamic"):
        d = tmp_path / kind
        d.mkdir()
        _export(_TinyPredict(), (torch.rand(1, 16, 16, 3),), d / "arbitrary_predict.onnx", ["style_image"],
                kind == "dynamic")
        _export(_TinyTransform(), (torch.rand(1, 24, 24, 3), torch.rand(1, 1, 1, 4)), d / "arbitrary_transform.onnx",
                ["content_image", "style_vector"], kind == "dynamic")
        out[kind] = d
    return out


def test_onnx_network_batched_and_per_image(onnx_models, tmp_path):
    fixed, dynamic = (open_network(onnx_models[k]) for k in ("fixed", "dynamic"))
    assert (fixed.style_size, fixed.content_size, fixed._batches) == (16, 24, (1, 1))
    assert dynamic._batches == (None, None) and fixed.threads == 1
    assert fixed.cache_id != dynamic.cache_id  # the key follows the weights' files
    styles = np.random.default_rng(0).random((5, 16, 16, 3), dtype=np.float32)
    vec = fixed.predict(styles)
    assert vec.shape == (5, 4)
    np.testing.assert_allclose(vec, dynamic.predict(styles), atol=1e-6)
    np.testing.assert_allclose(vec[:, :3], styles.mean(axis=(1, 2)), atol=1e-5)
    content = np.random.default_rng(1).random((19, 24, 24, 3), dtype=np.float32)  # > one dynamic chunk of 16
    vectors = np.random.default_rng(2).random((19, 4), dtype=np.float32)
    y = fixed.transform(content, vectors)
    assert y.shape == content.shape
    np.testing.assert_allclose(y, dynamic.transform(content, vectors), atol=1e-5)
    x, labels = toy_content(5)
    a = stylized_set(x, labels, 0.5, style_pool=toy_pool(), network=fixed, cache_dir=tmp_path)
    b = stylized_set(x, labels, 0.5, style_pool=toy_pool(), network=dynamic, cache_dir=tmp_path)
    assert a.images.shape == x.shape and not a.cache_hit and not b.cache_hit
    assert np.abs(a.images.astype(int) - b.images.astype(int)).max() <= 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_network(tmp_path)


def test_models_in_the_wrong_order_or_an_odd_fixed_batch(onnx_models, tmp_path):
    d = onnx_models["fixed"]
    with pytest.raises(ValueError, match=r"predictor with 1 input and a transformer with 2 .*got 2 and 1 inputs: "
                                         r"check the order"):
        OnnxStyleNetwork(d / "arbitrary_transform.onnx", d / "arbitrary_predict.onnx")
    pairs = _export(_TinyPredict(), (torch.rand(2, 16, 16, 3),), tmp_path / "pairs.onnx", ["style_image"], False)
    net = OnnxStyleNetwork(pairs, d / "arbitrary_transform.onnx")
    assert net._batches == (2, 1) and net.predict(np.zeros((4, 16, 16, 3), np.float32)).shape == (4, 4)
    with pytest.raises(ValueError, match="fixed batch of 2, which does not divide 3 images: export it with a dynamic"):
        net.predict(np.zeros((3, 16, 16, 3), np.float32))
    with pytest.raises(FileNotFoundError, match=r"ONNX model .*missing.onnx does not exist"):
        OnnxStyleNetwork(tmp_path / "missing.onnx", d / "arbitrary_transform.onnx")
