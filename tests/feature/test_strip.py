"""strip_advbn: plain models from copies that carry AdvBN / augmenter hooks and dual norms (timm's ModelEmaV3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch import nn

import advbn_aug
from advbn_aug import MixStyle, attach, strip_advbn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer2(self.layer1(self.stem(x))).mean((2, 3)))


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _classes(model: nn.Module) -> list[tuple[str, type]]:
    return [(n, type(m)) for n, m in model.named_modules()]


def _trained_with_ema() -> tuple[nn.Module, ModelEmaV3, list[str], list[tuple[str, type]]]:
    """A Net trained 2 steps with AdvBN at layer1 and MixStyle at stem, an EMA of it; AdvBN and MixStyle detached."""
    torch.manual_seed(0)
    model = Net()
    keys, classes = list(model.state_dict()), _classes(model)
    adv, mix = attach(model, "layer1"), MixStyle("stem", p=1.0).attach(model)
    ema = ModelEmaV3(model, decay=0.5)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for _ in range(2):
        x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
        loss = adv.loss(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model)
    mix.detach()
    adv.detach()
    return model, ema, keys, classes


def test_ema_copy_becomes_the_plain_model():
    model, ema, keys, classes = _trained_with_ema()
    assert list(model.state_dict()) == keys and _hooks(model) == 0
    assert any(".aux_bn." in k for k in ema.module.state_dict()) and _hooks(ema.module) > 0  # what detach leaves
    ema_state = {k: v.clone() for k, v in ema.module.state_dict().items()}

    plain = strip_advbn(ema.module)

    assert plain is not ema.module and list(plain.state_dict()) == keys and _classes(plain) == classes
    assert _hooks(plain) == 0 and all(p.requires_grad for p in plain.parameters())  # frozen prefix released
    assert all(torch.equal(v, ema_state[k]) for k, v in plain.state_dict().items())
    assert ema.module.state_dict().keys() == ema_state.keys() and _hooks(ema.module) > 0, "the EMA is left as is"
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), ema.module.eval()(x))  # the hooks were inert in eval mode anyway

    adv_copy = strip_advbn(ema.module, keep="adv")
    assert list(adv_copy.state_dict()) == keys
    assert torch.equal(adv_copy.layer2[1].running_mean, ema.module.layer2[1].aux_bn.running_mean)
    assert not torch.equal(adv_copy.layer2[1].running_mean, ema.module.layer2[1].running_mean)

    with pytest.raises(RuntimeError):  # the EMA no longer pairs with the detached model...
        ema.update(model)
    assert strip_advbn(ema.module, inplace=True) is ema.module  # ...until it is stripped too
    assert list(ema.module.state_dict()) == keys and _hooks(ema.module) == 0
    ema.update(model)


def test_exported_at_package_level():
    assert advbn_aug.strip_advbn is strip_advbn and "strip_advbn" in advbn_aug.__all__


def test_inplace_on_the_attached_model_is_detach():
    model = Net()
    keys = list(model.state_dict())
    adv = attach(model, "layer1")
    assert strip_advbn(model, inplace=True) is model
    assert not adv.attached and list(model.state_dict()) == keys and _hooks(model) == 0


def test_part_of_an_attached_model():
    torch.manual_seed(0)
    model = Net()
    adv = attach(model, "layer1")
    attached_keys = list(model.state_dict())
    with pytest.raises(ValueError, match=r"Sequential is part of the Net that AdvBN at 'layer1' is attached to"):
        strip_advbn(model.layer1, inplace=True)
    assert adv.attached and list(model.state_dict()) == attached_keys and _hooks(model) > 0
    part = strip_advbn(model.layer2)  # a copy: the attached model is left alone
    assert list(part.state_dict()) == ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                       "1.num_batches_tracked"] and _hooks(part) == 0
    assert adv.attached and list(model.state_dict()) == attached_keys
    model.train()
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    (F.cross_entropy(model(x), y) + adv.adversarial_loss(y)).backward()
    adv.detach()


def test_plain_model_and_bad_arguments():
    model = Net()
    copy_ = strip_advbn(model)
    assert copy_ is not model and _classes(copy_) == _classes(model)
    assert all(torch.equal(a, b) for a, b in zip(copy_.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="keep must be 'clean' or 'adv'"):
        strip_advbn(model, keep="aux")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"an nn.Module \(the model, or ema.module\), got OrderedDict; .* select_bn"):
        strip_advbn(model.state_dict())  # type: ignore[arg-type]
