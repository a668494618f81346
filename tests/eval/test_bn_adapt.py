"""Test-time BatchNorm adaptation in the evaluation (issue 15, item 4)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from advbn_aug.cli import main
from advbn_aug.eval.bn_adapt import adapted_predict, estimate_bn_stats, preserved_bn_state
from advbn_aug.eval.evaluate import EvalConfig, iter_batches, predict, prepare_batch
from advbn_aug.models.cifar_resnet import cifar_resnet

from .._cifar10c import write_cifar10c

_MEAN, _STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
_DEV = torch.device("cpu")


def _images(n=24, seed=0, shift=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 200, (n, 16, 16, 3)).astype(np.int64) + shift
    return np.clip(x, 0, 255).astype(np.uint8), rng.integers(0, 10, n)


def _adapted(model, x, mode, momentum=0.1):
    return adapted_predict(predict, lambda xb: prepare_batch(xb, _DEV, _MEAN, _STD), model, x,
                           lambda imgs: iter_batches(imgs, 8), mode, momentum, batch_size=8, device=_DEV, mean=_MEAN,
                           std=_STD, amp=False)


def test_estimate_bn_stats_is_the_average_over_the_set():
    bn = nn.BatchNorm2d(3)
    xs = [torch.randn(8, 3, 4, 4) * 2 + 1 for _ in range(3)]
    estimate_bn_stats(nn.Sequential(bn), xs)
    allx = torch.cat(xs)
    torch.testing.assert_close(bn.running_mean, allx.mean((0, 2, 3)))
    per_batch_var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in xs]).mean(0)
    torch.testing.assert_close(bn.running_var, per_batch_var)


def test_full_adaptation_predicts_with_the_set_statistics_and_restores_the_model():
    torch.manual_seed(0)
    model = cifar_resnet(20).eval()
    before = copy.deepcopy(model.state_dict())
    x, _ = _images(shift=60)  # a brightness shift the trained statistics have not seen
    got, _ = _adapted(model, x, "full")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # statistics restored
    twin = copy.deepcopy(model)
    estimate_bn_stats(twin, (prepare_batch(x[i:i + 8], _DEV, _MEAN, _STD) for i in range(0, len(x), 8)))
    expected, _ = predict(twin, x, batch_size=8, device=_DEV, mean=_MEAN, std=_STD, amp=False)
    assert np.array_equal(got, expected)


def test_online_adaptation_updates_before_each_batch():
    torch.manual_seed(0)
    model = cifar_resnet(20).eval()
    x, _ = _images(shift=60)
    got, _ = _adapted(model, x, "online", momentum=0.5)
    twin = copy.deepcopy(model)
    with preserved_bn_state(twin) as bns:
        for bn in bns:
            bn.momentum = 0.5
        expected = []
        for i in range(0, len(x), 8):
            twin.eval()
            for bn in bns:
                bn.train()
            with torch.no_grad():
                twin(prepare_batch(x[i:i + 8], _DEV, _MEAN, _STD))
            expected.append(predict(twin, x[i:i + 8], batch_size=8, device=_DEV, mean=_MEAN, std=_STD, amp=False)[0])
    assert np.array_equal(got, np.concatenate(expected))
    assert all(not m.training for m in model.modules())


def test_bad_modes_are_named():
    with pytest.raises(ValueError, match="unknown test-time adaptation 'tent'"):
        EvalConfig(tta="tent")
    with pytest.raises(ValueError, match="tta_momentum must be in"):
        EvalConfig(tta="online", tta_momentum=0)
    no_bn = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16 * 3, 10))
    with pytest.raises(ValueError, match="needs BatchNorm layers"):
        _adapted(no_bn, _images()[0], "full")


def test_cli_tta_all_writes_one_report_per_mode(tmp_path, capsys):
    ckpt = tmp_path / "r20.pt"
    torch.save(cifar_resnet(20).state_dict(), ckpt)
    x, y = _images(8, shift=0)
    x = np.ascontiguousarray(np.pad(x, ((0, 0), (8, 8), (8, 8), (0, 0))))  # 32 px
    root = write_cifar10c(tmp_path / "c10c", x, y)
    out = tmp_path / "out"
    assert main(["eval", "--model", "resnet20", "--checkpoint", str(ckpt), "--source", "cifar10-c", "--data-dir",
                 str(root), "--corruptions", "fog", "--severities", "1", "--num-images", "8", "--device", "cpu",
                 "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--output", str(out),
                 "--tta", "all"]) == 0
    text = capsys.readouterr().out
    assert "[TTA full]" in text and "[TTA online]" in text
    for mode in ("none", "full", "online"):
        assert (out / f"tta_{mode}" / "results.json").is_file()
