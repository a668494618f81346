"""advbn_aug.recipe.cifar10.model: the frozen prefix of the CIFAR ResNet, the training-time random crop + flip, and
(with the shared weights) the pretrained model and the keys its export keeps."""

from __future__ import annotations

import pytest
import torch

from ..._recipe_toy import toy_config


@pytest.mark.parametrize("layer, frozen", [("layer1", ("conv1", "bn1", "layer1")),
                                           ("layer2", ("conv1", "bn1", "layer1", "layer2")),
                                           ("layer3", ("conv1", "bn1", "layer1", "layer2", "layer3"))])
def test_the_prefix_ends_at_the_advbn_layer_and_freezing_it_leaves_the_rest_trainable(layer, frozen):
    from advbn_aug.models.cifar_resnet import cifar_resnet
    from advbn_aug.recipe.cifar10.model import cifar_prefix_modules

    model = cifar_resnet(20)
    cfg = toy_config(advbn={"layer": layer, "eps": 1.1, "step_size": 0.2, "steps": 2})
    prefix = cifar_prefix_modules(model, cfg)
    assert len(prefix) == len(frozen) and all(m is getattr(model, n) for m, n in zip(prefix, frozen))
    for m in prefix:  # as core.train.train_arm freezes it
        m.requires_grad_(False)
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(frozen)), name
    assert any(p.requires_grad for p in model.parameters())  # the linear head at least


def test_random_crop_flip_keeps_shape_dtype_and_draws_from_the_global_rng():
    from advbn_aug.recipe.cifar10.model import random_crop_flip

    for dtype in (torch.float32, torch.float64):
        x = torch.rand(5, 3, 8, 6, dtype=dtype)
        out = random_crop_flip(x)
        assert out.shape == x.shape and out.dtype == dtype
    torch.manual_seed(7)
    a = random_crop_flip(x)
    torch.manual_seed(7)
    assert torch.equal(a, random_crop_flip(x))


def test_random_crop_flip_is_a_padded_window_of_each_image_flipped_or_not():
    from advbn_aug.recipe.cifar10.model import random_crop_flip

    torch.manual_seed(0)
    x = torch.rand(32, 3, 8, 8) + 0.1  # no zeros, so the zero padding is told apart from the image
    same = random_crop_flip(x, pad=0)
    assert all(torch.equal(o, i) or torch.equal(o, i.flip(-1)) for o, i in zip(same, x))
    out = random_crop_flip(x, pad=2)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    seen = set()
    for o, p in zip(out, xp):
        hits = {(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                if torch.equal(o, (lambda w: w.flip(-1) if f else w)(p[:, dy:dy + 8, dx:dx + 8]))}
        assert len(hits) == 1, hits  # exactly one window and flip explains each output
        seen |= hits
    offsets, flips = {(dy, dx) for dy, dx, _ in seen}, {f for *_, f in seen}
    assert len(offsets) > 5 and flips == {False, True}  # crops and flips vary over the batch


def test_augment_looks_up_random_crop_flip_when_called(monkeypatch):
    import advbn_aug.recipe.cifar10.model as model

    x = torch.rand(4, 3, 8, 8)
    torch.manual_seed(3)
    expected = model.random_crop_flip(x)
    torch.manual_seed(3)
    assert torch.equal(model.augment(x, toy_config()), expected)
    monkeypatch.setattr(model, "random_crop_flip", lambda t: t * 0)
    assert torch.equal(model.augment(x, toy_config()), x * 0)


def test_load_cifar_model_gives_the_pretrained_weights_and_their_keys(shared_data):
    from advbn_aug.models.cifar_resnet import CifarResNet
    from advbn_aug.recipe.cifar10.model import load_cifar_model

    model, keys = load_cifar_model(toy_config(model="resnet20"))
    assert isinstance(model, CifarResNet) and len(model.layer1) == 3  # depth 20: three blocks a stage
    state = model.state_dict()
    # the file's keys, in the model's order: every weight and BatchNorm statistic, no num_batches_tracked counters
    assert keys == [k for k in state if not k.endswith("num_batches_tracked")] and "linear.weight" in keys
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
