"""Cheaper attack schedules (issue 12): random start, warm start, attack every k-th step, compiled suffix."""

import pytest
import torch

from advbn_aug import AdvBN
from advbn_aug.models.cifar_resnet import cifar_resnet


def _setup(**options):
    torch.manual_seed(0)
    model = cifar_resnet(20)
    adv = AdvBN("layer1", **options).attach(model)
    model.train()
    return model, adv


def _count_suffix_calls(adv):
    """Wrap the split's run_suffix to count calls in eval (attack) and train (adversarial pass) mode."""
    calls = {"attack": 0, "adv": 0}
    run = adv.split.run_suffix

    def counting(feature, *, train, inputs=None):
        calls["adv" if train else "attack"] += 1
        return run(feature, train=train, inputs=inputs)

    adv.split.run_suffix = counting
    return calls


def _batch(i):
    g = torch.Generator().manual_seed(i)
    return torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)


def test_defaults_are_the_paper_schedule():
    adv = AdvBN("layer1")
    c = adv.config
    assert (c.steps, c.random_start, c.warm_start, c.attack_every, c.compile_attack) == (6, False, False, 1, False)


def test_attack_every_k_reuses_the_last_multipliers_between_attacks():
    model, adv = _setup(attack_every=3)
    calls = _count_suffix_calls(adv)
    seen = []
    for i in range(5):
        x, y = _batch(i)
        adv.loss(x, y)
        seen.append(tuple(t.clone() for t in adv.last_multipliers))
    assert calls == {"attack": 6 * 2, "adv": 5}  # attacks at steps 0 and 3 only; the adversarial term every step
    assert torch.equal(seen[1][0], seen[0][0]) and torch.equal(seen[2][1], seen[0][1])
    assert not torch.equal(seen[3][0], seen[2][0]) or not torch.equal(seen[3][1], seen[2][1])
    assert torch.equal(seen[4][0], seen[3][0])


def test_reused_multipliers_perturb_the_new_batch():
    model, adv = _setup(attack_every=2)
    x0, y0 = _batch(0)
    adv.loss(x0, y0)
    m, s = adv.last_multipliers
    x1, y1 = _batch(1)
    model(x1)
    f = adv.cached_feature.clone()
    expected = adv.perturb(f, m, s)
    got = {}
    first_conv = model.layer2[0].conv1  # the fx suffix calls leaf modules: the first one that reads the feature
    handle = first_conv.register_forward_pre_hook(lambda mod, a: got.setdefault("x", a[0].detach().clone()))
    adv.adversarial_loss(y1)
    handle.remove()
    torch.testing.assert_close(got["x"], expected)


def test_warm_start_continues_from_the_previous_batch():
    model, adv = _setup(warm_start=True, steps=0)
    for i in range(2):
        adv.loss(*_batch(i))
    assert torch.equal(adv.last_multipliers[0], torch.ones(1, 16, 1, 1))  # steps=0: stays at the start
    adv.config.steps = 1  # one step per batch from here on, each starting where the last ended
    adv.loss(*_batch(2))
    first = adv.last_multipliers[0].clone()
    adv.loss(*_batch(3))
    second = adv.last_multipliers[0]
    # after two single steps of 0.2 from 1, every entry is 1 + {-0.4, 0, 0.4}: the second started at the first
    assert torch.allclose((first - 1).abs(), torch.full_like(first, 0.2))
    assert set(torch.round((second - 1) / 0.2).unique().tolist()) <= {-2.0, 0.0, 2.0}
    assert torch.allclose((second - first).abs(), torch.full_like(first, 0.2))


def test_random_start_follows_the_global_seed():
    out = []
    for _ in range(2):
        model, adv = _setup(random_start=True, steps=0)
        torch.manual_seed(5)
        adv.loss(*_batch(0))
        out.append(adv.last_multipliers[0].clone())
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], torch.ones_like(out[0]))
    assert ((out[0] >= -0.1 - 1e-6) & (out[0] <= 2.1 + 1e-6)).all()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_attack_every_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="attack_every must be an integer >= 1"):
        AdvBN("layer1", attack_every=bad)


def test_compile_attack_refuses_the_hook_split():
    with pytest.raises(ValueError, match="compile_attack=True needs the torch.fx split"):
        AdvBN("layer1", compile_attack=True, split="hook").attach(cifar_resnet(20))


def test_compile_attack_gives_the_eager_multipliers():
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    import copy
    twin = copy.deepcopy(head)
    eager = AdvBN("2").attach(head)
    compiled = AdvBN("2", compile_attack=True).attach(twin)
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    for model, adv in ((head, eager), (twin, compiled)):
        model.train()
        adv.loss(x, y)
    torch.testing.assert_close(compiled.last_multipliers[0], eager.last_multipliers[0])
    torch.testing.assert_close(compiled.last_multipliers[1], eager.last_multipliers[1])


def test_adv_fraction_attacks_the_first_part_of_the_batch_only():
    model, adv = _setup(adv_fraction=0.25)
    calls = _count_suffix_calls(adv)
    seen = []
    run = adv.split.run_suffix

    def record(feature, *, train, inputs=None):
        seen.append(feature.shape[0])
        return run(feature, train=train, inputs=inputs)

    adv.split.run_suffix = record
    x, y = _batch(0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model(x)
    f = adv.cached_feature.clone()
    loss, logits = adv.adversarial_loss(y, return_logits=True)
    assert seen == [2] * 7 and logits.shape == (2, 10)  # ceil(0.25 * 8) samples, 6 attack passes + 1
    # the same as attacking a batch of those 2 samples
    twin_model, twin = _setup()
    twin_model.load_state_dict(state)
    twin_model(x[:2])
    torch.testing.assert_close(twin.cached_feature, f[:2])
    torch.testing.assert_close(twin.adversarial_loss(y[:2]), loss)
    assert calls == {"attack": 6, "adv": 1}  # one attack of 6 passes, one adversarial pass


@pytest.mark.parametrize("bad", [0, 0.0, 1.5, -0.1, True])
def test_adv_fraction_must_be_a_share_of_the_batch(bad):
    with pytest.raises(ValueError, match=r"adv_fraction must be in \(0, 1\]"):
        AdvBN("layer1", adv_fraction=bad)


# ---------------------------------------------------------------------------------------------- instance-level
def _instance_reference(g2, f, y, eps=1.1, alpha=0.2, steps=6):
    """docs/algorithm.md's attack with per-sample statistics over (H, W) and per-sample multipliers, written out."""
    mu = f.mean(dim=(2, 3), keepdim=True)
    m, s = torch.ones_like(mu), torch.ones_like(mu)
    for _ in range(steps):
        m.requires_grad_(True)
        s.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(g2(((f - mu) * s + mu * m).clamp(min=0)), y)
        gm, gs = torch.autograd.grad(loss, (m, s))
        with torch.no_grad():
            m = (m + alpha * gm.sign()).clamp(1 - eps, 1 + eps)
            s = (s + alpha * gs.sign()).clamp(1 - eps, 1 + eps)
    return m.detach(), s.detach()


def test_instance_stats_match_the_written_out_attack():
    import copy

    from advbn_aug import attack_stats

    model, adv = _setup(stats="instance")
    ref_model = copy.deepcopy(model)
    x, y = _batch(0)
    model(x)
    f = adv.cached_feature.clone()
    adv.adversarial_loss(y)
    m, s = adv.last_multipliers
    assert m.shape == (8, 16, 1, 1) and s.shape == (8, 16, 1, 1)

    def g2(net, z):
        return net.linear(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(net.layer3(net.layer2(z)), 1), 1))

    ref_model.eval()  # the attack runs the suffix in eval mode; the aux BNs start as copies of the clean ones
    ref_m, ref_s = _instance_reference(lambda z: g2(ref_model, z), f, y)
    torch.testing.assert_close(m, ref_m)
    torch.testing.assert_close(s, ref_s)
    fm, fs = attack_stats(lambda z: g2(ref_model, z), f, y, per_instance=True)
    torch.testing.assert_close(fm, ref_m)
    # the perturbed feature's per-sample channel means are m_i * mu_i before the clamp
    out = adv.perturb(f, m, s)
    assert out.shape == f.shape


def test_instance_stats_refuse_carrying_multipliers_over():
    with pytest.raises(ValueError, match="stats='instance' .* cannot carry over"):
        AdvBN("layer1", stats="instance", warm_start=True)
    with pytest.raises(ValueError, match="stats must be 'batch' or 'instance'"):
        AdvBN("layer1", stats="channel")
