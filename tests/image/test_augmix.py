import random

import numpy as np
import pytest
import torch
from PIL import Image

from advbn_aug.image import AUGMIX_ALL_OPS, AUGMIX_OPS, AugMix, AugMixBatch, AugMixConfig, AugMixViews

from ._augmix_images import as_batch, toy_image


# ---------------------------------------------------------------- config errors
@pytest.mark.parametrize("kwargs, match", [
    ({"ops": ["autocontrast", "blur"]}, "unknown AugMix op"),
    ({"severity": 0}, "severity must be in"),
    ({"severity": 11}, "severity must be in"),
    ({"width": 0}, "width must be an integer >= 1"),
    ({"depth": 0}, "depth must be -1"),
    ({"ops": []}, "empty"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugMixConfig(**kwargs)
    with pytest.raises(ValueError, match=match):
        AugMixBatch(**kwargs)


def test_paper_ops_by_default():
    assert AugMixConfig().op_names() == AUGMIX_OPS
    assert "brightness" not in AUGMIX_OPS
    assert AugMixConfig(all_ops=True).op_names() == AUGMIX_ALL_OPS
    assert AugMixConfig.from_dict(AugMixConfig(ops=["rotate"]).to_dict()).op_names() == ("rotate",)


# ---------------------------------------------------------------- per-image (timm) path
def test_pil_path_types_and_determinism():
    img = toy_image()
    aug = AugMix()
    out_np = aug(img)
    assert out_np.shape == img.shape and out_np.dtype == np.uint8
    out_pil = aug(Image.fromarray(img))
    assert isinstance(out_pil, Image.Image) and out_pil.size == (32, 32)

    def run(seed):
        random.seed(seed)
        np.random.seed(seed)
        return [aug(img) for _ in range(4)]

    a, b = run(3), run(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, img) for x in a)


def test_pil_path_rejects_bad_input():
    with pytest.raises(TypeError, match="HWC uint8"):
        AugMix()(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(TypeError, match="AugMixBatch"):
        AugMix()(torch.zeros(3, 32, 32))


def test_views_transform():
    views = AugMixViews(AugMix(), num_views=2, preprocess=lambda im: torch.from_numpy(np.array(im)))
    out = views(Image.fromarray(toy_image()))
    assert len(out) == 3 and all(v.shape == (32, 32, 3) for v in out)
    assert torch.equal(out[0], torch.from_numpy(toy_image()))
    with pytest.raises(ValueError, match="num_views"):
        AugMixViews(num_views=0)


# ---------------------------------------------------------------- batched tensor path
def test_batch_shape_dtype_range_and_seed():
    x = torch.rand(6, 3, 32, 32)
    aug = AugMixBatch()
    torch.manual_seed(0)
    a = aug(x)
    torch.manual_seed(0)
    b = aug(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    v = aug.views(x, num_views=2)
    assert v.shape == (18, 3, 32, 32) and torch.equal(v[:6], x)
    assert AugMixBatch()(torch.rand(2, 1, 16, 16)).shape == (2, 1, 16, 16)


def test_batch_per_sample_ops():
    x = as_batch(toy_image()).repeat(8, 1, 1, 1)
    torch.manual_seed(1)
    out = AugMixBatch()(x)
    flat = out.flatten(1)
    distinct = {tuple(torch.round(r * 255).int()[:64].tolist()) for r in flat}
    assert len(distinct) == 8  # identical inputs, 8 different results
    params = AugMixBatch().forward_parameters(8)
    assert params["op"].shape == (3, 3, 8) and params["ws"].shape == (8, 3) and params["m"].shape == (8,)
    assert torch.allclose(params["ws"].sum(1), torch.ones(8))
    assert int(params["depth"].min()) >= 1 and int(params["depth"].max()) <= 3


def test_index_and_where_paths_agree():
    x = torch.rand(5, 3, 16, 16)
    aug = AugMixBatch(all_ops=True)
    p = aug.forward_parameters(5)
    a = AugMixBatch(all_ops=True, select="index")(x, p)
    b = AugMixBatch(all_ops=True, select="where")(x, p)
    assert torch.allclose(a, b, atol=1e-6)


def test_batch_rejects_bad_input():
    with pytest.raises(ValueError, match="permute"):
        AugMixBatch()(torch.rand(2, 32, 32, 3))
    with pytest.raises(TypeError, match="float"):
        AugMixBatch()(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        AugMixBatch()(torch.randn(2, 3, 8, 8) * 3)
    with pytest.raises(TypeError, match="AugMix"):
        AugMixBatch()(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="select"):
        AugMixBatch(select="fast")
