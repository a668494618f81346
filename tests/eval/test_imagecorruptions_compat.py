"""Our ImageNet-parameter corruptions against the PyPI package ``imagecorruptions`` (through the local shim).

Skipped where the package is not installed (it is not a dependency): ``pip install --no-deps imagecorruptions
scikit-image``. Deterministic corruptions must agree to a fraction of a grey level; random ones must change the image
by the same amount. Frost (procedural textures here) and elastic transform (the package replaced ImageNet-C's
affine + displacement with a displacement-only variant) are left out on purpose.
"""

import importlib.util

import numpy as np
import pytest

from advbn_aug.eval import corrupt

DETERMINISTIC = ["defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression",
                 "gaussian_blur", "saturate"]
RANDOM = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur", "snow",
          "fog", "spatter"]


@pytest.fixture(scope="module")
def ref():
    pytest.importorskip("skimage")
    if importlib.util.find_spec("imagecorruptions") is None:
        pytest.skip("imagecorruptions not installed (pip install --no-deps imagecorruptions scikit-image)")
    from advbn_aug.eval.imagecorruptions_compat import load_imagecorruptions

    return load_imagecorruptions()


@pytest.fixture(scope="module")
def image():
    yy, xx = np.mgrid[0:224, 0:224]
    rng = np.random.default_rng(0)
    base = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.float32)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_deterministic_corruptions_match(ref, image, name, severity):
    theirs = np.uint8(ref.corrupt(image, corruption_name=name, severity=severity)).astype(np.float32)
    ours = corrupt(image, name, severity, dataset="imagenet").astype(np.float32)
    assert np.abs(ours - theirs).mean() < 0.2


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.parametrize("severity", [1, 5])
def test_random_corruptions_change_the_image_as_much(ref, image, name, severity):
    np.random.seed(0)
    theirs = np.uint8(ref.corrupt(image, corruption_name=name, severity=severity)).astype(np.float32)
    ours = corrupt(image, name, severity, dataset="imagenet").astype(np.float32)
    clean = image.astype(np.float32)
    d_theirs, d_ours = np.abs(theirs - clean).mean(), np.abs(ours - clean).mean()
    assert d_ours == pytest.approx(d_theirs, rel=0.25, abs=0.5)
