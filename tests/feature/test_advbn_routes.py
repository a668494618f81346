"""Evaluation and export through either BatchNorm route (the paper's protocol: adversarial BN for style sets)."""

import copy

import numpy as np
import pytest
import torch

from advbn_aug import AdvBN, Policy, PolicyConfig, routed, select_bn_state
from advbn_aug.cli import main
from advbn_aug.eval.checkpoint import read_state_dict
from advbn_aug.eval.evaluate import load_model
from advbn_aug.models.cifar_resnet import cifar_resnet

from .._cifar10c import write_cifar10c


def _trained(steps=2):
    """A CIFAR ResNet-20 after a few AdvBN steps: the aux BatchNorms' statistics differ from the clean ones."""
    torch.manual_seed(0)
    model = cifar_resnet(20)
    adv = AdvBN("layer1", steps=2).attach(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model.train()
    for _ in range(steps):
        x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
        opt.zero_grad()
        adv.loss(x, y).backward()
        opt.step()
    model.eval()
    return model, adv


def test_route_adv_evaluates_through_the_aux_norms_and_matches_the_adv_export():
    model, adv = _trained()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        clean = model(x)
        with adv.route("adv"):
            adv_out = model(x)
        assert torch.equal(model(x), clean), "the route is restored on exit"
    assert not torch.allclose(clean, adv_out)
    keys = list(model.state_dict())
    attached_state = copy.deepcopy(model.state_dict())
    plain_adv = copy.deepcopy(model)
    exported = adv.detach(keep="adv")
    assert [k for k in exported.state_dict() if ".aux_bn." not in k] == [k for k in keys if ".aux_bn." not in k]
    assert type(exported.layer2[0].bn1) is torch.nn.BatchNorm2d
    with torch.no_grad():
        torch.testing.assert_close(exported(x), adv_out)
    # the same through a saved state dict, into a fresh plain model
    fresh = cifar_resnet(20).eval()
    fresh.load_state_dict(select_bn_state(attached_state, "adv"), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), adv_out)
        fresh.load_state_dict(select_bn_state(attached_state, "clean"), strict=True)
        torch.testing.assert_close(fresh(x), clean)
    del plain_adv


def test_detach_keep_clean_is_the_default_and_bad_keep_errors():
    model, adv = _trained(steps=1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        clean = model(x)
    with pytest.raises(ValueError, match="keep must be 'clean' or 'adv'"):
        adv.detach(keep="aux")
    assert adv.attached, "a bad argument must not half-detach"
    with torch.no_grad():
        assert torch.equal(adv.detach()(x), clean)
    with pytest.raises(ValueError, match="route must be 'clean' or 'adv'"):
        with routed(model, "both"):
            pass


def test_policy_route_and_detach_keep():
    torch.manual_seed(0)
    model = cifar_resnet(20)
    policy = Policy(PolicyConfig(features=[{"type": "advbn", "layer": "layer1", "steps": 1}]))
    policy.attach(model)
    model.train()
    policy.step(model, torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), policy.route("adv"):
        adv_out = model(x)
    exported = policy.detach(keep="adv")
    with torch.no_grad():
        torch.testing.assert_close(exported(x), adv_out)
    assert not any(".aux_bn." in k for k in exported.state_dict())


def test_read_state_dict_formats_and_errors(tmp_path):
    model, _ = _trained(steps=1)
    state = model.state_dict()
    bare = tmp_path / "bare.pt"
    torch.save(state, bare)
    plain, aux = ({k: v for k, v in state.items() if ".aux_bn." not in k},
                  {k: v for k, v in state.items() if ".aux_bn." in k})
    timm_like = tmp_path / "timm.pth.tar"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in plain.items()},
                "task_state": {"advbn_aux": aux}}, timm_like)
    for path in (bare, timm_like):
        got = read_state_dict(path, "adv")
        assert set(got) == set(plain)
        assert torch.equal(got["layer2.0.bn1.running_mean"], state["layer2.0.bn1.aux_bn.running_mean"])
        assert torch.equal(read_state_dict(path, "clean")["layer2.0.bn1.running_mean"],
                           state["layer2.0.bn1.running_mean"])
    no_aux = tmp_path / "plain.pt"
    torch.save(plain, no_aux)
    with pytest.raises(ValueError, match=r"no adversarial BatchNorm state.*--bn clean"):
        read_state_dict(no_aux, "adv")
    with pytest.raises(ValueError, match="no 'state_dict_ema' entry"):
        read_state_dict(bare, "clean", ema=True)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a state_dict"):
        read_state_dict(tmp_path / "list.pt")
    with pytest.raises(ValueError, match="needs a --checkpoint"):
        load_model("resnet20", None, bn="adv")
    m_adv, _, _ = load_model("resnet20", bare, bn="adv")
    assert torch.equal(m_adv.layer2[0].bn1.running_var, state["layer2.0.bn1.aux_bn.running_var"])


def test_cli_eval_both_routes(tmp_path, capsys):
    model, _ = _trained(steps=1)
    ckpt = tmp_path / "advbn_r20.pt"
    torch.save(model.state_dict(), ckpt)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 4)
    root = write_cifar10c(tmp_path / "c10c", x, y)
    out = tmp_path / "out"
    args = ["eval", "--model", "resnet20", "--checkpoint", str(ckpt), "--source", "cifar10-c", "--data-dir",
            str(root), "--corruptions", "fog", "--severities", "1", "--num-images", "4", "--device", "cpu",
            "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--output", str(out)]
    assert main([*args, "--bn", "both"]) == 0
    text = capsys.readouterr().out
    assert "[clean BN]" in text and "[adv BN]" in text
    assert (out / "bn_clean" / "results.json").is_file() and (out / "bn_adv" / "results.json").is_file()
    plain = tmp_path / "plain.pt"
    torch.save(cifar_resnet(20).state_dict(), plain)
    assert main([*args[:4], str(plain), *args[5:], "--bn", "adv"]) == 2
    assert "no adversarial BatchNorm state" in capsys.readouterr().err
