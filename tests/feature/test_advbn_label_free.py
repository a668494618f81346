"""Label-free AdvBN (issue 11): the attack maximises KL(prediction on f || prediction on f_adv)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advbn_aug import AdvBN
from advbn_aug.losses import prediction_kl


class _TinySeg(nn.Module):
    """Per-pixel logits (N, 3, H, W): a stem, a stage to attack after, a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 1))

    def forward(self, x):
        return self.head(self.stage(self.stem(x)))


def _setup(**options):
    torch.manual_seed(0)
    model = _TinySeg()
    adv = AdvBN("stage", **options).attach(model)
    model.train()
    return model, adv


def test_prediction_kl_matches_the_definition_for_dense_logits():
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    p, q = a.softmax(1), b.softmax(1)
    expected = (p * (p.log() - q.log())).sum(1).mean()
    torch.testing.assert_close(prediction_kl(b, a), expected)
    assert prediction_kl(a, a).abs() < 1e-6
    with pytest.raises(ValueError, match="must share one"):
        prediction_kl(a, b[:, :2])


def test_label_free_attack_moves_away_from_the_clean_prediction():
    model, adv = _setup(attack_loss="kl")
    x = torch.randn(4, 3, 12, 12)
    model(x)
    f = adv.cached_feature.clone()
    loss, logits = adv.adversarial_loss(None, return_logits=True)
    assert logits.shape == (4, 3, 12, 12) and torch.isfinite(loss) and loss > 0
    m, s = adv.last_multipliers
    assert not torch.equal(m, torch.ones_like(m))
    loss.backward()
    assert model.head[0].weight.grad is not None and model.stem[0].weight.grad is None  # frozen prefix
    # the attack raised the KL in eval mode above that of the random start it began from
    with torch.no_grad(), adv.route("adv"):
        model.eval()
        ref = model.head(f)
        kl_adv = prediction_kl(model.head(adv.perturb(f, m, s)), ref)
        g = torch.Generator().manual_seed(1)
        rand = [prediction_kl(model.head(adv.perturb(f, 1 + 2.2 * (torch.rand(m.shape, generator=g) - 0.5),
                                                     1 + 2.2 * (torch.rand(m.shape, generator=g) - 0.5))), ref)
                for _ in range(5)]
    assert kl_adv > max(rand)


def test_label_free_attack_with_a_supervised_training_term():
    model, adv = _setup(attack_loss="kl")
    x, y = torch.randn(4, 3, 12, 12), torch.randint(0, 3, (4, 12, 12))
    model(x)
    loss, logits = adv.adversarial_loss(y, return_logits=True)  # per-pixel CE on the adversarial features
    torch.testing.assert_close(loss, F.cross_entropy(logits, y))


def test_targets_none_needs_the_kl_attack():
    model, adv = _setup()
    model(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="targets=None .* needs AdvBN\\(..., attack_loss='kl'\\)"):
        adv.adversarial_loss(None)


def test_label_free_is_inert_in_eval_and_bad_value_is_named():
    torch.manual_seed(0)
    model = _TinySeg().eval()
    ref = copy.deepcopy(model)
    AdvBN("stage", attack_loss="kl").attach(model)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model.eval()(x), ref(x))
    with pytest.raises(ValueError, match="attack_loss must be 'ce' or 'kl'"):
        AdvBN("stage", attack_loss="mse")
