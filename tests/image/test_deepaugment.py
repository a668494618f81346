import pytest
import torch
import torch.nn.functional as F

from advbn_aug.image import (
    CAE,
    EDSR,
    DeepAugment,
    load_deepaugment_net,
    save_deepaugment_net,
    train_deepaugment_net,
)

from .._toy_images import wave_images


@pytest.mark.parametrize("net_cls", [CAE, EDSR])
def test_zero_strength_reproduces_network(net_cls):
    torch.manual_seed(0)
    net = net_cls(channels=8).eval()
    x = torch.rand(4, 3, 32, 32)
    ref = net(x)
    if ref.shape[-1] != 32:
        ref = F.interpolate(ref, size=(32, 32), mode="area")
    out = DeepAugment(net, strength=0.0)(x)
    assert torch.equal(out, ref.clamp(0, 1))


@pytest.mark.parametrize("net_cls", [CAE, EDSR])
def test_default_strength_changes_image_keeps_format(net_cls):
    torch.manual_seed(0)
    net = net_cls(channels=8)
    x = torch.rand(4, 3, 32, 32)
    aug = DeepAugment(net, group_size=1)
    clean = DeepAugment(net, strength=0.0)(x)
    torch.manual_seed(1)
    a = aug(x)
    torch.manual_seed(1)
    b = aug(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)  # deterministic under a seed
    assert not torch.allclose(a, clean, atol=1e-5)
    # the wrapped network itself is untouched
    assert torch.equal(DeepAugment(net, strength=0.0)(x), clean)


def test_parameters_separate_from_application():
    net = CAE(channels=8)
    aug = DeepAugment(net, strength=2.0)
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(0)
    p = aug.forward_parameters()
    assert torch.equal(aug(x, p), aug(x, p))
    assert aug.forward_parameters()["weights"].keys() == p["weights"].keys()


def test_training_lowers_loss_and_round_trips(tmp_path):
    imgs = wave_images(16, size=16)
    for net in (CAE(channels=8), EDSR(channels=8, blocks=1)):
        hist = train_deepaugment_net(net, imgs, epochs=4, batch_size=8, lr=3e-3, seed=0)
        assert hist[-1] < hist[0]
        path = save_deepaugment_net(net, tmp_path / f"{type(net).__name__}.pt")
        loaded = load_deepaugment_net(path)
        assert type(loaded) is type(net)
        x = torch.rand(2, 3, 32, 32)
        assert torch.equal(loaded(x), net.eval()(x))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="deepaugment train"):
        load_deepaugment_net(tmp_path / "missing.pt")
    torch.save(CAE(channels=8).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="arch="):
        load_deepaugment_net(tmp_path / "bare.pt")
    assert isinstance(load_deepaugment_net(tmp_path / "bare.pt", arch="cae", channels=8), CAE)
    with pytest.raises(ValueError, match="strength"):
        DeepAugment(CAE(channels=8), strength=-1)
    with pytest.raises(ValueError, match="permute"):
        DeepAugment(CAE(channels=8))(torch.rand(2, 32, 32, 3))
    with pytest.raises(ValueError, match="weights"):
        DeepAugment.from_spec({"strength": 1.0})
