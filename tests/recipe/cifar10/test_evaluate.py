"""advbn_aug.recipe.cifar10.evaluate: the BatchNorm-folded evaluation copy of a CIFAR ResNet, and the main
evaluation's fields (clean JPEG / lossless accuracy and their gap, mCA over the corruption grid)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ..._recipe_toy import toy_config


def _trained_stats_resnet() -> nn.Module:
    """A CIFAR ResNet-20 whose BatchNorms have non-trivial statistics and affine parameters (so folding them
    changes the convolutions)."""
    from advbn_aug.models.cifar_resnet import cifar_resnet

    torch.manual_seed(0)
    model = cifar_resnet(20)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_fuse_for_eval_folds_every_batchnorm_in_a_copy_computing_the_same_function():
    from advbn_aug.recipe.cifar10.evaluate import fuse_for_eval

    model = _trained_stats_resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_eval(model)
    assert fused is not model and not fused.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert fused.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fused(x), model(x), atol=1e-4, rtol=1e-4)
    state = model.state_dict()  # the model itself is untouched
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in before)


def test_fuse_for_eval_returns_other_models_unchanged():
    from advbn_aug.recipe.cifar10.evaluate import fuse_for_eval

    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert fuse_for_eval(other) is other and isinstance(other[1], nn.BatchNorm2d)


class _Brightness(nn.Module):
    """Class 3 for a bright image (normalised mean above 0), class 0 for a dark one: ``(N, 3, H, W) -> (N, 10)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = (x.mean((1, 2, 3)) > 0).float()
        return torch.stack([1 - bright, *[torch.zeros_like(bright)] * 2, bright, *[torch.zeros_like(bright)] * 6], 1)


def _data(lossless: bool, same_jpeg: bool) -> SimpleNamespace:
    """RecipeData's arrays at toy size, every image bright (predicted 3) unless said: class 3 is 1/4 of the JPEG
    test labels and 3/4 of the corruption images'; the lossless images are bright, bright, dark, dark (labels 3, 3,
    0, 0: all right) and their JPEG copies all dark (half right)."""
    rng = np.random.default_rng(0)

    def images(n: int, low: int = 200, high: int = 256) -> np.ndarray:
        return rng.integers(low, high, (n, 32, 32, 3), dtype=np.uint8)

    d = SimpleNamespace(test_x=images(8), test_y=np.array([3, 3, 0, 1, 2, 4, 5, 6]), eval_x=images(4),
                        eval_y=np.array([3, 3, 3, 1]), lossless_x=None, lossless_y=None, lossless_jpeg_x=None)
    if lossless:
        d.lossless_x, d.lossless_y = np.concatenate([images(2), images(2, 0, 40)]), np.array([3, 3, 0, 0])
        d.lossless_jpeg_x = images(4, 0, 40) if same_jpeg else None
    return d


def test_evaluate_cifar10_reports_each_set_against_its_own_labels(tmp_path):
    from advbn_aug.recipe.cifar10.evaluate import evaluate_cifar10

    cfg = toy_config(corruptions=["gaussian_noise", "contrast"], severities=[1, 3], eval_batch_size=4)
    out = evaluate_cifar10(_Brightness(), cfg, _data(True, True), torch.device("cpu"), amp=False, name="toy",
                           out_dir=tmp_path, cache_dir=None, progress=False)
    assert out["clean_acc_jpeg"] == 0.25 and out["clean_images_jpeg"] == 8
    assert out["clean_acc_lossless"] == 1.0 and out["clean_acc_jpeg_same"] == 0.5 and out["lossless_images"] == 4
    assert out["jpeg_gap"] == 0.5  # lossless minus JPEG, on the same images
    assert out["corruption_images"] == 4 and out["clean_acc_eval_subset"] == 0.75
    assert out["mca"] == pytest.approx(0.75) and out["mca_benchmark15"] == pytest.approx(0.75)
    assert set(out["per_corruption"]) == {"gaussian_noise", "contrast"} and set(out["per_severity"]) == {"1", "3"}
    assert out["accuracy"]["contrast"] == {"1": 0.75, "3": 0.75}
    assert out["eval_seconds"] >= 0


def test_evaluate_cifar10_without_lossless_images_omits_their_fields(tmp_path):
    from advbn_aug.recipe.cifar10.evaluate import evaluate_cifar10

    cfg = toy_config(corruptions=["contrast"], severities=[1], eval_batch_size=4)
    for data, present in ((_data(False, False), set()), (_data(True, False), {"clean_acc_lossless"})):
        out = evaluate_cifar10(_Brightness(), cfg, data, torch.device("cpu"), amp=False, name="toy",
                               out_dir=tmp_path, cache_dir=None, progress=False)
        fields = {"clean_acc_lossless", "lossless_images", "clean_acc_jpeg_same", "jpeg_gap"}
        assert fields & set(out) == present | ({"lossless_images"} if present else set())
        assert out["clean_acc_jpeg"] == 0.25
