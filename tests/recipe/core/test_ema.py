"""Weight averaging in the recipe's training loop (advbn_aug.recipe.core.ema, train.train_arm with ``ema_decay``): the
trained model is bit-identical with and without it, the average is exported through both BatchNorm routes, and an
interrupted run resumes to the same average. One toy PACS arm (AdvBN + DSU: both routes, and DSU's random draws)
on synthetic 16 px images and a random stand-in for the ImageNet weights; the runs are shared by the tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch


def _train_run(cfg, run_dir, interrupt_at: int | None = None):
    """``train_arm`` as the runner calls it; ``interrupt_at``: a KeyboardInterrupt in that step's crop (1-based)."""
    import advbn_aug.recipe.pacs.data as pd
    from advbn_aug.recipe.core.train import deterministic_algorithms, train_arm
    from advbn_aug.recipe.pacs.config import PACS_ARMS

    rng = np.random.default_rng(0)
    data = SimpleNamespace(train_x=rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8),
                           train_y=np.arange(24) % 7)
    run_dir.mkdir(parents=True, exist_ok=True)
    real, calls = pd.random_resized_crop_flip, {"n": 0}

    def crop(x, scale):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt(f"simulated stop in step {interrupt_at}")
        return real(x, scale)

    pd.random_resized_crop_flip = crop
    try:
        with deterministic_algorithms():
            model, info = train_arm(cfg, PACS_ARMS["dsu_advbn"], 0, data, run_dir, torch.device("cpu"), False,
                                    None, False)
    finally:
        pd.random_resized_crop_flip = real
    return model.state_dict(), info


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three trainings of the same two-step toy run: without weight averaging, with it, and with it interrupted
    after the step-1 checkpoint and resumed."""
    import timm

    import advbn_aug.models.efficientnet_lite as pretrained
    from advbn_aug.recipe.pacs.config import PACSConfig

    root = tmp_path_factory.mktemp("ema")
    torch.manual_seed(0)
    weights = root / "lite0.pth"
    torch.save(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict(), weights)
    base = PACSConfig(seeds=[0], steps=2, batch_size=4, img_size=16, checkpoint_interval=1, train_subset=24,
                      advbn={"layer": "blocks.1", "eps": 1.1, "step_size": 0.2, "steps": 1})
    ema_cfg = PACSConfig.from_dict({**base.to_dict(), "ema_decay": 0.5})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pretrained, "efficientnet_lite_weights", lambda variant="lite0": weights)
        plain, _ = _train_run(base, root / "plain")
        averaged, info = _train_run(ema_cfg, root / "ema")
        with pytest.raises(KeyboardInterrupt):
            _train_run(ema_cfg, root / "resumed", interrupt_at=2)
        ckpt = torch.load(root / "resumed" / "ckpt.pt", weights_only=False)
        resumed, _ = _train_run(ema_cfg, root / "resumed")
    return SimpleNamespace(root=root, plain=plain, averaged=averaged, info=info, ckpt=ckpt, resumed=resumed,
                           base=base, ema_cfg=ema_cfg)


def test_weight_averaging_leaves_the_trained_model_bit_identical(runs):
    assert list(runs.plain) == list(runs.averaged)
    for k in runs.plain:
        assert torch.equal(runs.plain[k], runs.averaged[k]), k
    assert not (runs.root / "plain" / "model_ema.pt").exists()  # off: nothing exported


def test_average_is_exported_through_both_routes(runs):
    from advbn_aug.recipe.core.train import sha256_file

    ema = torch.load(runs.root / "ema" / "model_ema.pt", weights_only=True)
    ema_adv = torch.load(runs.root / "ema" / "model_ema_adv.pt", weights_only=True)
    assert list(ema) == list(ema_adv) == list(runs.averaged)  # a plain model's keys, in order
    assert not torch.equal(ema["classifier.weight"], runs.averaged["classifier.weight"])
    # the frozen prefix did not move, and the average leaves it exactly as loaded
    for k in ema:
        if k.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")):
            assert torch.equal(ema[k], runs.averaged[k]), k
    # after blocks.1, the adversarial BatchNorms' running statistics differ from the clean ones
    bn = "blocks.2.0.bn1.running_mean"
    assert not torch.equal(ema[bn], ema_adv[bn])
    assert runs.info["ema"] == {"decay": 0.5, "sha256": sha256_file(runs.root / "ema" / "model_ema.pt"),
                                "sha256_adv": sha256_file(runs.root / "ema" / "model_ema_adv.pt")}


def test_interrupted_run_resumes_to_the_same_average(runs):
    assert runs.ckpt["step"] == 1 and runs.ckpt["ema"]["decay"] == 0.5
    for name in ("model_ema.pt", "model_ema_adv.pt"):
        a = torch.load(runs.root / "ema" / name, weights_only=True)
        b = torch.load(runs.root / "resumed" / name, weights_only=True)
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    for k in runs.averaged:
        assert torch.equal(runs.averaged[k], runs.resumed[k]), k


def test_resume_checkpoint_without_an_average_is_not_resumed(runs, tmp_path, caplog):
    """A checkpoint written without weight averaging cannot give the average of the steps before it: the run starts
    again from step 0 (the train key differs too: ema_decay is part of it when on)."""
    assert runs.base.train_key() != runs.ema_cfg.train_key() and "ema_decay" not in runs.base.train_key()
    import logging

    import advbn_aug.recipe.core.train as train
    from advbn_aug.recipe.core.config import digest

    ck = dict(runs.ckpt)
    del ck["ema"]
    torch.save(ck, tmp_path / "ckpt.pt")
    assert ck["train_key"] == digest(runs.ema_cfg.train_key())
    def stop(cfg, step):  # the first step's lr: only the resume decision before it is looked at
        raise KeyboardInterrupt(f"stopped at step {step}")

    with caplog.at_level(logging.INFO, logger="advbn_aug.recipe"), pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "_lr_at", stop)
        mp.setattr("advbn_aug.models.efficientnet_lite.efficientnet_lite_weights",
                   lambda variant="lite0": runs.root / "lite0.pth")
        with pytest.raises(KeyboardInterrupt, match="step 0"):
            _train_run(runs.ema_cfg, tmp_path)
    assert "ignoring" in caplog.text and "resumed" not in caplog.text


def test_weight_average_rules():
    from torch import nn

    from advbn_aug.recipe.core.ema import WeightAverage

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    for bad in (1.0, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="decay"):
            WeightAverage(model, bad)
    avg = WeightAverage(model, 0.75)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(4.0)
    model(torch.randn(5, 3))  # moves the BatchNorm's running statistics and its counter
    avg.update(model)
    now = model.state_dict()
    torch.testing.assert_close(avg.state["0.weight"], start["0.weight"] + 1.0)  # 0.75 start + 0.25 now
    mean = "1.running_mean"
    torch.testing.assert_close(avg.state[mean], 0.75 * start[mean] + 0.25 * now[mean])
    assert torch.equal(avg.state["0.bias"], now["0.bias"])  # unmoved: exactly
    assert avg.state["1.num_batches_tracked"] == 1  # integers follow the model
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, 0.5).load_state_dict(avg.state_dict())
    with pytest.raises(RuntimeError, match="other state_dict keys"):
        avg.update(nn.Sequential(nn.Linear(3, 2)))
