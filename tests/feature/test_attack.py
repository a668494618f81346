"""The functional core: attack_stats agrees with AdvBN and with the hand-written specification (docs/algorithm.md)."""

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision

from advbn_aug import AdvBN, attack_stats, feature_stats, perturb_stats

from .._reference import reference_attack


def _g2(model, f):
    return model.fc(torch.flatten(model.avgpool(model.layer4(model.layer3(model.layer2(f)))), 1))


def test_attack_stats_matches_reference_and_advbn():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    with torch.no_grad():
        f = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x)))))
    ref_model = copy.deepcopy(model)
    m, s = attack_stats(lambda z: _g2(model, z), f, y, eps=1.1, step_size=0.2, steps=6, clamp=0.0)
    _, ref_m, ref_s = reference_attack(lambda z: _g2(ref_model, z), f, y)
    torch.testing.assert_close(m, ref_m)
    torch.testing.assert_close(s, ref_s)
    assert not torch.equal(m, torch.ones_like(m))
    assert all(p.grad is None for p in model.parameters())

    adv = AdvBN("layer1").attach(model)
    am, as_ = adv.attack(f, y)
    torch.testing.assert_close(am, m)
    torch.testing.assert_close(as_, s)


def test_attack_stats_zero_steps_and_token_features():
    f = torch.randn(2, 5, 8)
    lin = torch.nn.Linear(8, 3)
    m, s = attack_stats(lambda z: lin(z.mean(1)), f, torch.tensor([0, 2]), steps=0)
    assert m.shape == (1, 1, 8) and torch.equal(m, torch.ones_like(m)) and torch.equal(s, torch.ones_like(s))
    m, s = attack_stats(lambda z: lin(z.mean(1)), f, torch.tensor([0, 2]), eps=0.3, steps=3, clamp=None)
    assert ((m >= 0.7 - 1e-6) & (m <= 1.3 + 1e-6)).all()
    out = perturb_stats(f, feature_stats(f).mean, m, s, None)
    assert out.shape == f.shape


def test_attack_stats_errors():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        attack_stats(lambda z: z, torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        attack_stats(lambda z: z.mean((2, 3)), torch.randn(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), eps=-1)


def test_adversarial_loss_returns_logits():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    adv = AdvBN("layer1").attach(model)
    model.train()
    y = torch.randint(0, 10, (4,))
    model(torch.randn(4, 3, 32, 32))
    loss, logits = adv.adversarial_loss(y, return_logits=True)
    assert logits.shape == (4, 10)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y))
    loss.backward()


# ---------------------------------------------------------------------------------------------- starting points
def _head():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(6, 3))


def test_random_start_is_a_reproducible_draw_inside_the_box():
    f, y = torch.rand(5, 4, 6, 6), torch.tensor([0, 1, 2, 0, 1])
    head = _head()
    m0, s0 = attack_stats(head, f, y, eps=0.5, steps=0, random_start=True, generator=torch.Generator().manual_seed(3))
    m1, s1 = attack_stats(head, f, y, eps=0.5, steps=0, random_start=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(m0, m1) and torch.equal(s0, s1)
    assert ((m0 >= 0.5) & (m0 <= 1.5)).all() and ((s0 >= 0.5) & (s0 <= 1.5)).all()
    assert not torch.equal(m0, torch.ones_like(m0)) and not torch.equal(m0, s0)
    # one step from the random start: exactly one sign step from that start, clamped to the box
    m, s = attack_stats(head, f, y, eps=0.5, step_size=0.3, steps=1, random_start=True,
                        generator=torch.Generator().manual_seed(3))
    assert torch.allclose((m - m0).abs(), torch.full_like(m, 0.3)) or ((m == 0.5) | (m == 1.5)).any()
    assert ((m - m0).abs() <= 0.3 + 1e-6).all()


def test_init_starts_the_attack_there():
    f, y = torch.rand(5, 4, 6, 6), torch.tensor([0, 1, 2, 0, 1])
    head = _head()
    init = (torch.full((1, 4, 1, 1), 1.4), torch.full((1, 4, 1, 1), 0.3))
    m, s = attack_stats(head, f, y, eps=0.5, steps=0, init=init)
    assert torch.equal(m, init[0]) and torch.equal(s, torch.full_like(s, 0.5))  # clamped into [0.5, 1.5]
    # continuing from a 2-step attack's result for 2 more steps == a 4-step attack
    m2, s2 = attack_stats(head, f, y, eps=0.5, steps=2)
    m4, s4 = attack_stats(head, f, y, eps=0.5, steps=4)
    mc, sc = attack_stats(head, f, y, eps=0.5, steps=2, init=(m2, s2))
    torch.testing.assert_close(mc, m4)
    torch.testing.assert_close(sc, s4)
    with pytest.raises(ValueError, match="init multipliers have 3"):
        attack_stats(head, f, y, init=(torch.ones(3), torch.ones(3)))
