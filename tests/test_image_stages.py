import os

import pytest
import torch

from advbn_aug.image import AlbumentationsStage, AugMixBatch, FnStage, KorniaStage, RandomApply, as_stage, build_stage

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def test_kornia_module_and_container():
    K = pytest.importorskip("kornia.augmentation")
    x = torch.rand(3, 3, 16, 16)
    stage = as_stage(K.RandomHorizontalFlip(p=1.0))
    assert isinstance(stage, KorniaStage)
    assert torch.allclose(stage(x), x.flip(-1))
    seq = as_stage(K.AugmentationSequential(K.RandomHorizontalFlip(p=1.0), K.RandomVerticalFlip(p=1.0)))
    assert torch.allclose(seq(x), x.flip(-1).flip(-2))
    built = build_stage({"type": "kornia", "name": "ColorJitter", "kwargs": {"brightness": 0.2, "p": 1.0}})
    out = built(x)
    assert out.shape == x.shape and out.dtype == x.dtype and float(out.max()) <= 1


def test_albumentations_stage():
    A = pytest.importorskip("albumentations")
    x = torch.randint(0, 256, (3, 3, 16, 16)).float() / 255
    stage = as_stage(A.Compose([A.HorizontalFlip(p=1.0)]))
    assert isinstance(stage, AlbumentationsStage)
    out = stage(x)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert torch.allclose(out, x.flip(-1), atol=1e-6)
    built = build_stage({"type": "albumentations", "transforms": [{"name": "VerticalFlip", "kwargs": {"p": 1.0}}]})
    assert torch.allclose(built(x), x.flip(-2), atol=1e-6)


def test_random_apply_per_sample():
    x = torch.rand(64, 3, 8, 8)
    neg = FnStage(lambda t: 1 - t)
    assert torch.equal(RandomApply(neg, 0.0)(x), x)
    assert torch.equal(RandomApply(neg, 1.0)(x), 1 - x)
    torch.manual_seed(0)
    out = RandomApply(neg, 0.5)(x)
    changed = (out != x).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54
    assert torch.equal(out[changed], 1 - x[changed])
    with pytest.raises(ValueError, match="p must be in"):
        RandomApply(neg, 1.5)


def test_spec_and_own_stages():
    aug = build_stage({"type": "augmix", "severity": 2, "p": 0.5})
    assert isinstance(aug, RandomApply) and isinstance(aug.stage, AugMixBatch)
    assert aug(torch.rand(4, 3, 16, 16)).shape == (4, 3, 16, 16)


def test_unknown_stage_type():
    with pytest.raises(TypeError, match="unknown stage type.*FnStage"):
        as_stage(lambda t: t)
    with pytest.raises(ValueError, match="unknown stage type 'cutout'"):
        build_stage({"type": "cutout"})
    with pytest.raises(ValueError, match="no 'NotAThing'"):
        build_stage({"type": "kornia", "name": "NotAThing"})
    with pytest.raises(ValueError, match="permute"):
        build_stage({"type": "kornia", "name": "RandomHorizontalFlip"})(torch.rand(2, 8, 8, 3))
    with pytest.raises(TypeError, match="float"):
        build_stage({"type": "kornia", "name": "RandomHorizontalFlip"})(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
