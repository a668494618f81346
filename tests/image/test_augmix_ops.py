"""The batched AugMix ops (advbn_aug.image.augmix_ops): PIL-equivalent pixel ops, and the affine maps applied by one
warp."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageOps

from advbn_aug.image import AUGMIX_OPS
from advbn_aug.image import augmix_ops as A

from ._augmix_images import as_batch, toy_image


@pytest.mark.parametrize("name, ours, ref", [
    ("equalize", lambda t: A.PIXEL_OPS["equalize"](t, None), ImageOps.equalize),
    ("posterize", lambda t: A.PIXEL_OPS["posterize"](t, torch.tensor([3.0])), lambda im: ImageOps.posterize(im, 3)),
    ("solarize", lambda t: A.PIXEL_OPS["solarize"](t, torch.tensor([3.0])), lambda im: ImageOps.solarize(im, 256 - 76)),
    ("translate", lambda t: A.warp(t, A.affine_matrices(AUGMIX_OPS, torch.tensor([AUGMIX_OPS.index("translate_y")]),
                                                       torch.tensor([5.0 / (32 / 3) * 10]), torch.tensor([1]),
                                                       32, 32)),
     lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, 5.0), resample=Image.BILINEAR)),
])
def test_tensor_ops_match_pil(name, ours, ref):
    for seed in range(2):
        img = toy_image(seed)
        assert torch.allclose(ours(as_batch(img)), as_batch(ref(Image.fromarray(img))), atol=1e-6), name


def test_affine_matrices_per_row():
    names = ("autocontrast", "rotate", "shear_x", "translate_x")
    op = torch.tensor([0, 1, 2, 3, 3])
    level = torch.tensor([10.0, 10.0, 5.0, 10.0, 10.0])
    sign = torch.tensor([1, 1, -1, 1, -1])
    mat = A.affine_matrices(names, op, level, sign, 16, 32)
    assert mat.shape == (5, 3, 3)
    assert torch.equal(mat[0], torch.eye(3)), "a pixel op is the identity"
    c, s = torch.cos(torch.deg2rad(torch.tensor(30.0))), torch.sin(torch.deg2rad(torch.tensor(30.0)))
    assert torch.allclose(mat[1, :2, :2], torch.stack([torch.stack([c, -s]), torch.stack([s, c])]))
    assert torch.allclose(mat[1] @ torch.tensor([16.0, 8.0, 1.0]), torch.tensor([16.0, 8.0, 1.0])), "about the centre"
    assert mat[2, 0, 1] == pytest.approx(-0.15)  # half strength, negative sign, 0.3 at full
    assert mat[3, 0, 2] == pytest.approx(32 / 3) and mat[4, 0, 2] == pytest.approx(-32 / 3)  # a third of the width


def test_warp_identity_and_black_fill():
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(A.warp(x, torch.eye(3).repeat(2, 1, 1)), x)
    shift = torch.eye(3).repeat(2, 1, 1)
    shift[:, 0, 2] = 2.0  # output pixel (u, v) reads input (u + 2, v)
    out = A.warp(x, shift)
    torch.testing.assert_close(out[..., :6], x[..., 2:])
    assert torch.equal(out[..., 6:], torch.zeros(2, 3, 8, 2))
