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


def _flipped_fraction(stage, n=400, seed=0):
    """Share of ``n`` asymmetric images that ``stage`` mirrored (each image is either kept or mirrored)."""
    torch.manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 8, 8)).float() / 255  # on the uint8 grid: albumentations round-trips exactly
    out = stage(x)
    flipped = torch.isclose(out, x.flip(-1), atol=1e-6).flatten(1).all(1)
    kept = torch.isclose(out, x, atol=1e-6).flatten(1).all(1)
    assert bool((flipped ^ kept).all()), "every image must be either kept or mirrored"
    return float(flipped.float().mean())


@pytest.mark.parametrize("spec", [
    {"type": "kornia", "name": "RandomHorizontalFlip"},
    {"type": "kornia", "transforms": [{"name": "RandomHorizontalFlip"}]},
    {"type": "albumentations", "name": "HorizontalFlip"},
    {"type": "albumentations", "transforms": [{"name": "HorizontalFlip"}]},
])
def test_stage_p_is_the_probability_that_the_op_is_applied(spec):
    """Regression (issue 22, 3): the stage's ``p`` compounded with the op's own default (0.5 for flips), so the
    ``PolicyConfig`` example ``p: 1.0`` flipped half the images and ``p: 0.5`` a quarter."""
    pytest.importorskip(spec["type"] if spec["type"] == "albumentations" else "kornia.augmentation")

    def stage(p):
        built = build_stage({**spec, "p": p}) if p is not None else build_stage(spec)
        if isinstance(built, AlbumentationsStage):
            built.transform.set_random_seed(0)  # albumentations has its own generator
        return built

    assert _flipped_fraction(stage(1.0)) == 1.0
    assert _flipped_fraction(stage(None)) == 1.0  # no p: always applied, not the op's hidden default
    assert 0.42 < _flipped_fraction(stage(0.5)) < 0.58
    assert _flipped_fraction(stage(0.0)) == 0.0


def test_op_probability_in_kwargs_means_the_same_and_is_given_once():
    pytest.importorskip("kornia.augmentation")
    assert _flipped_fraction(build_stage({"type": "kornia", "name": "RandomHorizontalFlip",
                                          "kwargs": {"p": 1.0}})) == 1.0
    seq = {"type": "kornia", "transforms": [{"name": "RandomHorizontalFlip", "p": 0.5}]}
    assert 0.42 < _flipped_fraction(build_stage(seq)) < 0.58  # an item's p: that op's probability
    with pytest.raises(ValueError, match="give p once"):
        build_stage({"type": "kornia", "name": "RandomHorizontalFlip", "p": 0.5, "kwargs": {"p": 1.0}})
    with pytest.raises(ValueError, match="probability"):
        build_stage({"type": "kornia", "name": "RandomHorizontalFlip", "p": 2})


@pytest.mark.parametrize("spec, match", [
    ({"type": "kornia", "name": "ColorJitter", "brightness": 0.5},
     r"unknown key.*'brightness'.*valid keys.*'kwargs'.*ColorJitter takes.*'brightness'"),
    ({"type": "kornia", "name": "ColorJitter", "kwargs": {"brightnes": 0.5}},
     r"ColorJitter has no argument.*'brightnes'.*did you mean.*'brightness'.*valid"),
    ({"type": "kornia", "transforms": [{"name": "RandomHorizontalFlip", "kwarg": {"p": 1.0}}]},
     r"unknown key.*'kwarg'.*valid keys"),
    ({"type": "kornia", "name": "RandomHorizontalFlip", "prob": 1.0}, r"unknown key.*'prob'.*valid keys"),
    ({"type": "albumentations", "name": "GaussNoise", "kwargs": {"sigma": 3}},
     r"GaussNoise has no argument.*'sigma'.*valid.*'std_range'"),
    ({"type": "albumentations", "transforms": [{"name": "HorizontalFlip"}], "name": "VerticalFlip"},
     r"unknown key.*'name'.*valid keys"),
    ({"type": "augmix", "sevrity": 2}, r"unknown key.*'sevrity'.*valid keys.*'severity'"),
    ({"type": "deepaugment", "weights": "x.pt", "strenght": 1.0}, r"unknown key.*'strenght'.*valid keys.*'strength'"),
])
def test_unknown_or_misspelled_spec_keys_raise_naming_the_valid_ones(spec, match):
    """Regression (issue 22, 3): unknown keys were ignored (the stage returned its input unchanged) and
    albumentations only warned about unknown arguments."""
    if spec["type"] in ("kornia", "albumentations"):
        pytest.importorskip(spec["type"] if spec["type"] == "albumentations" else "kornia.augmentation")
    with pytest.raises(ValueError, match=match):
        build_stage(spec)
