import pytest
import torch
from torch import nn

from advbn_aug.policy import FeatureAugmenter, Policy, PolicyConfig, Schedule


class Tiny(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


class StandIn:
    """A feature augmenter following the protocol (MixStyle-like: no loss term) that records calls."""

    def __init__(self):
        self.model, self.active, self.calls = None, True, 0

    def attach(self, model):
        self.model = model
        return self

    def detach(self):
        model, self.model = self.model, None
        return model

    def set_active(self, active):
        self.active = active

    def loss_term(self, targets, criterion=None):
        self.calls += 1
        return None


def _full_config():
    return PolicyConfig(
        stages=[{"type": "kornia", "name": "RandomHorizontalFlip", "kwargs": {"p": 0.5}},
                {"type": "augmix", "severity": 2, "p": 0.5, "start_epoch": 1}],
        augmix={"severity": 3, "width": 3, "depth": -1, "alpha": 1.0, "all_ops": False, "ops": None},
        num_views=2,
        features=[{"type": "advbn", "layer": "layer1", "eps": 1.1, "steps": 2, "start_epoch": 1, "every": 2}],
        jsd_weight=12.0, adv_weight=0.5, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25],
    )


def test_config_round_trip(tmp_path):
    cfg = _full_config()
    assert PolicyConfig.from_dict(cfg.to_dict()) == cfg
    assert PolicyConfig.from_yaml(cfg.to_yaml()) == cfg
    path = tmp_path / "policy.yaml"
    cfg.to_yaml(path)
    assert PolicyConfig.from_yaml(path) == cfg
    assert PolicyConfig.from_dict(PolicyConfig.augmix_advbn("layer1", warmup_epochs=2).to_dict()).features[0][
        "start_epoch"] == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"jsd_weight": -1.0}, "jsd_weight"),
    ({"num_views": 0}, "num_views"),
    ({"augmix": {"severity": 20}}, "severity"),
    ({"augmix": {"ops": ["blur"]}}, "unknown AugMix op"),
    ({"stages": [{"name": "x"}]}, "'type'"),
    ({"mean": [0.5]}, "mean and std"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PolicyConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown PolicyConfig keys"):
        PolicyConfig.from_dict({"jsd": 1})


def test_unknown_types():
    with pytest.raises(ValueError, match="unknown stage type 'blur'"):
        Policy({"stages": [{"type": "blur"}]})
    with pytest.raises(ValueError, match="unknown feature augmenter type 'stylize'"):
        Policy({"features": [{"type": "stylize"}]})
    with pytest.raises(TypeError, match="unknown feature augmenter"):
        Policy(features=[object()])


def test_schedule():
    s = Schedule(start_epoch=2, every=3)
    assert not s.active(1, 0) and s.active(2, 0) and not s.active(2, 1) and s.active(2, 3)
    assert not Schedule(end_epoch=1).active(1, 0)
    with pytest.raises(ValueError):
        Schedule(every=0)


def test_step_augmix_advbn_lowers_loss():
    torch.manual_seed(0)
    model = Tiny()
    cfg = PolicyConfig.augmix_advbn("layer1", mean=[0.5] * 3, std=[0.25] * 3)
    cfg.features[0]["steps"] = 2
    policy = Policy(cfg)
    policy.attach(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    x = torch.rand(8, 3, 8, 8)
    y = torch.arange(8) % 4
    model.train()
    losses = []
    for step in range(10):
        torch.manual_seed(100)  # the same augmentation every step: a fixed batch
        loss, info = policy.step(model, x, y, epoch=0, step=step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert set(info) >= {"loss", "loss_clean", "loss_jsd", "loss_adv", "features_active"}
    assert info["features_active"] == [True]
    assert losses[-1] < 0.6 * losses[0], losses
    plain = policy.detach()
    assert plain is model and all(p.requires_grad for p in model.parameters())


def test_step_schedule_and_protocol():
    assert isinstance(StandIn(), FeatureAugmenter)
    feat = StandIn()
    model = Tiny()
    policy = Policy({"features": []}, features=[feat])
    with pytest.raises(RuntimeError, match="attach"):
        policy.step(model.train(), torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))
    policy.attach(model)
    loss, info = policy.step(model, torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))
    assert "loss_jsd" not in info and "loss_adv" not in info and feat.calls == 1
    assert torch.allclose(loss, info["loss_clean"])
    with pytest.raises(RuntimeError, match="model.train"):
        policy.step(model.eval(), torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))


def test_advbn_warmup_and_every():
    model = Tiny().train()
    policy = Policy(_full_config())
    policy.attach(model)
    x, y = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8), torch.arange(4)
    _, info = policy.step(model, x, y, epoch=0, step=0)
    assert info["features_active"] == [False] and "loss_adv" not in info and "loss_jsd" in info
    _, info = policy.step(model, x, y, epoch=1, step=1)
    assert info["features_active"] == [False]
    _, info = policy.step(model, x, y, epoch=1, step=2)
    assert info["features_active"] == [True] and float(info["loss_adv"]) > 0


def test_policy_with_in_code_stages_and_advbn_object():
    K = pytest.importorskip("kornia.augmentation")
    from advbn_aug.feature.advbn import AdvBN

    model = Tiny().train()
    policy = Policy(stages=[K.RandomHorizontalFlip(p=1.0)], features=[AdvBN("layer1", steps=1)])
    policy.attach(model)
    batch = policy.augment(torch.rand(2, 3, 8, 8))
    assert batch.shape == (2, 3, 8, 8)
    loss, info = policy.loss(model, torch.rand(2, 3, 8, 8), torch.arange(2))
    assert loss.requires_grad and "loss_adv" in info
    with pytest.raises(ValueError, match="permute"):
        policy.step(model, torch.rand(2, 8, 8, 3), torch.arange(2))


def _model_state(model):
    """Everything attaching can change: keys, classes, train flags, requires_grad flags and every hook dict."""
    return ([(n, type(m), m.training) for n, m in model.named_modules()], list(model.state_dict()),
            [(n, p.requires_grad) for n, p in model.named_parameters()],
            [(n, dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._forward_hooks_with_kwargs))
             for n, m in model.named_modules()])


@pytest.mark.parametrize("bad", [{"type": "mixstyle", "layer": "layer9"}, {"type": "dsu", "layer": "fc9"}])
def test_attach_is_atomic_when_a_later_feature_fails(bad):
    """Regression (issue 22, 8): AdvBN stayed attached (aux BNs, hooks, frozen prefix) after the second feature's
    bad layer raised, and ``policy.detach()`` then said "not attached"."""
    model = Tiny().train()
    before = _model_state(model)
    policy = Policy({"features": [{"type": "advbn", "layer": "layer1"}, {"type": "dsu", "layer": "layer2"}, bad]})
    with pytest.raises(ValueError, match="is not a module of Tiny"):
        policy.attach(model)
    assert _model_state(model) == before
    assert not any("aux_bn" in k for k in model.state_dict())
    assert all(not f.attached for f, _ in policy.features[1:]) and policy.features[0][0].advbn.model is None
    with pytest.raises(RuntimeError, match="not attached"):
        policy.detach()
    good = Policy({"features": [{"type": "advbn", "layer": "layer1"}]})  # the model can be attached again
    assert good.attach(model) is model and good.detach() is model
    assert _model_state(model) == before


def test_step_with_an_empty_batch_is_a_clear_error():
    """Regression (issue 22, 11): ``ZeroDivisionError`` from ``batch.shape[0] // n``."""
    model = Tiny().train()
    policy = Policy({"features": []}, features=[StandIn()])
    policy.attach(model)
    with pytest.raises(ValueError, match="empty batch"):
        policy.step(model, torch.rand(0, 3, 8, 8), torch.zeros(0, dtype=torch.long))
    assert policy.features[0][0].active and policy.features[0][0].calls == 0
