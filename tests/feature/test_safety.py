"""AdvBN steps are all-or-nothing and use the right feature (issue #22): a refused batch (NaN, empty, wrong targets)
leaves the model and the optimizer as they were, an eval forward drops the cached feature, adversarial_loss refuses
eval mode, and feature augmenters (DSU, MixStyle) act on the clean forward only, with either split."""

import copy

import pytest
import torch

from advbn_aug import DSU, MixStyle, attach
from advbn_aug.models.cifar_resnet import cifar_resnet


def _resnet8():
    torch.manual_seed(0)
    return cifar_resnet(8)


def _batch(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_state(model, before):
    after = model.state_dict()
    assert list(after) == list(before)
    changed = [k for k in before if not torch.equal(after[k], before[k])]
    assert not changed, f"{len(changed)} entries changed: {changed[:5]}"


def _eval_out(model, x):
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(x)
    model.train(was)
    return out


# ---------------------------------------------------------------------------------------------- refused batches
@pytest.mark.parametrize("entry, freeze_prefix, split", [
    ("loss", True, "fx"), ("loss", False, "hook"), ("own_forward", True, "hook"), ("own_forward", False, "fx")])
def test_refused_nan_batch_leaves_model_and_optimizer_untouched(entry, freeze_prefix, split):
    model = _resnet8()
    adv = attach(model, "layer1", freeze_prefix=freeze_prefix, split=split, steps=2)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    model.train()
    x, y = _batch()
    adv.loss(x, y).backward()  # one good step: the optimizer has momentum buffers, the aux BNs statistics
    opt.step()
    opt.zero_grad()
    probe = _batch(seed=2)[0]
    out_before, state, opt_state = _eval_out(model, probe), _state(model), copy.deepcopy(opt.state_dict())

    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="layer 'layer1' contains NaN or Inf"):
        if entry == "loss":
            adv.loss(bad, y)
        else:
            model(bad)
            adv.adversarial_loss(y)

    assert torch.equal(_eval_out(model, probe), out_before), "the refused batch changed eval outputs"
    _assert_same_state(model, state)  # parameters, running stats, aux BN stats, num_batches_tracked
    assert all(p.grad is None for p in model.parameters())
    assert str(opt.state_dict()) == str(opt_state)
    adv.loss(x, y).backward()  # training goes on
    opt.step()
    assert torch.isfinite(_eval_out(model, probe)).all()


def test_wrong_targets_after_the_clean_forward_roll_it_back():
    model = _resnet8()
    adv = attach(model, "layer1")
    model.train()
    x, y = _batch()
    state = _state(model)
    model(x)
    with pytest.raises(ValueError, match=r"targets have shape \(3,\) but the batch has 4 samples"):
        adv.adversarial_loss(y[:3])
    _assert_same_state(model, state)
    with pytest.raises(ValueError, match=r"targets have shape \(3,\) but the batch has 4 samples"):
        adv.loss(x, y[:3])  # checked before the forward
    _assert_same_state(model, state)


@pytest.mark.parametrize("freeze_prefix", [True, False])
def test_empty_batch_is_refused_by_name_and_changes_nothing(freeze_prefix):
    model = _resnet8()
    adv = attach(model, "layer1", freeze_prefix=freeze_prefix)
    model.train()
    state = _state(model)
    empty_x, empty_y = torch.empty(0, 3, 16, 16), torch.empty(0, dtype=torch.long)
    with pytest.raises(ValueError, match=r"empty batch.*N = 0"):
        adv.loss(empty_x, empty_y)
    _assert_same_state(model, state)
    with pytest.raises(ValueError, match=r"output of layer 'layer1' is an empty batch"):
        model(empty_x)  # the own-forward path: refused at the layer, before the layers after it run
    _assert_same_state(model, state)
    with pytest.raises(RuntimeError, match="no cached feature"):
        adv.adversarial_loss(empty_y)
    with pytest.raises(ValueError, match="empty batch"):
        adv.attack(torch.empty(0, 16, 8, 8), empty_y)
    x, y = _batch()
    assert torch.isfinite(adv.loss(x, y))


# ---------------------------------------------------------------------------------------------- the cached feature
def test_eval_forward_drops_the_cached_feature():
    """train forward on x1, eval forward on x2, then adversarial_loss(y2) must not attack x1's feature."""
    model = _resnet8()
    adv = attach(model, "layer1")
    (x1, _), (x2, y2) = _batch(seed=1), _batch(seed=2)
    model.train()
    model(x1)
    model.eval()
    with torch.no_grad():
        model(x2)
    model.train()
    with pytest.raises(RuntimeError, match="no cached feature.*also in eval mode"):
        adv.adversarial_loss(y2)


def test_adversarial_loss_refuses_eval_mode_and_changes_nothing():
    model = _resnet8()
    adv = attach(model, "layer1")
    x, y = _batch()
    model.train()
    model(x)
    model.eval()
    state = _state(model)
    with pytest.raises(RuntimeError, match=r"model is in eval mode.*model.train\(\)"):
        adv.adversarial_loss(y)
    _assert_same_state(model, state)  # no aux BN statistic moved
    assert all(p.grad is None for p in model.parameters())
    model.train()
    assert torch.isfinite(adv.adversarial_loss(y)), "the cached feature was kept"


# ---------------------------------------------------------------------------------------------- feature augmenters
def _count_augment_calls(aug, monkeypatch):
    calls = []
    original = aug.augment

    def counting(x):
        calls.append(tuple(x.shape))
        return original(x)

    monkeypatch.setattr(aug, "augment", counting)
    return calls


@pytest.mark.parametrize("kind", ["dsu", "mixstyle"])
@pytest.mark.parametrize("where", ["layer2", "layer1"])  # downstream of AdvBN, and at its layer
def test_feature_augmenters_act_on_the_clean_forward_only_with_either_split(kind, where, monkeypatch):
    x, y = _batch()
    counts, active = {}, {}
    for split in ("fx", "hook"):
        model = _resnet8()
        aug = (DSU(where, p=1.0, seed=0) if kind == "dsu" else MixStyle(where, p=1.0, seed=0)).attach(model)
        adv = attach(model, "layer1", split=split, steps=2)
        calls = _count_augment_calls(aug, monkeypatch)
        model.train()
        for _ in range(2):
            adv.loss(x, y).backward()
        counts[split], active[split] = len(calls), aug.active
    assert counts == {"fx": 2, "hook": 2}, "one augment call per step (the clean forward)"
    assert active == {"fx": True, "hook": True}, "the augmenter is switched back on after AdvBN's passes"


def test_disabled_augmenter_stays_disabled_after_an_advbn_step(monkeypatch):
    model = _resnet8()
    aug = DSU("layer2", p=1.0).attach(model)
    adv = attach(model, "layer1", split="hook", steps=1)
    aug.set_active(False)
    calls = _count_augment_calls(aug, monkeypatch)
    model.train()
    adv.loss(*_batch())
    assert calls == [] and aug.active is False
