"""advbn_aug.integrations.timm.task: AdvBNTask's forward with AugMix splits and with a Policy, and its aux BNs kept
exactly through a clean warm-up (single process and one-process DDP)."""

from __future__ import annotations

import pytest
import timm
import torch

from advbn_aug.feature.config import AdvBNConfig
from advbn_aug.integrations.timm import settings as timm_settings
from advbn_aug.integrations.timm import task as timm_task
from advbn_aug.integrations.timm import trainer
from advbn_aug.integrations.timm.task import AUX_STATE_KEY, AdvBNSettings, AdvBNTask

from ..._timm import MODEL


def test_task_with_timm_augmix_splits_repeats_targets():
    """With N AugMix splits the adversarial term covers all N*B rows; JSD's own CE is used for it."""
    from timm.loss import JsdCrossEntropy

    torch.manual_seed(0)
    task = AdvBNTask(timm.create_model(MODEL, num_classes=2), JsdCrossEntropy(num_splits=3, smoothing=0.0),
                     verbose=False, settings=AdvBNSettings(advbn=AdvBNConfig(steps=1)))
    task.train()
    seen = []
    orig = task.advbn.adversarial_loss
    task.advbn.adversarial_loss = lambda t, c: seen.append((t.clone(), c)) or orig(t, c)
    y = torch.tensor([0, 1])
    result = task(torch.randn(6, 3, 32, 32), y)
    (targets, criterion), = seen
    assert torch.equal(targets, y.repeat(3)) and isinstance(criterion, torch.nn.CrossEntropyLoss)
    assert result["output"].shape == (6, 2) and set(result) >= {"loss", "loss_task", "loss_adv", "output"}
    assert result["loss"].item() == pytest.approx((result["loss_task"] + result["loss_adv"]).item(), rel=1e-5)


def test_task_with_policy_undoes_loader_normalisation(tmp_path):
    """--advbn-policy YAML: the task de-normalises timm's batch and runs the Policy (AugMix views, JSD, AdvBN)."""
    from advbn_aug.policy import PolicyConfig

    cfg = PolicyConfig.augmix_advbn("layer1")
    cfg.features[0]["steps"] = 1
    cfg.to_yaml(tmp_path / "policy.yaml")
    parser = trainer.build_parser()
    args = parser.parse_args(["--data-dir", str(tmp_path), "--advbn-policy", str(tmp_path / "policy.yaml"),
                              "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25"])
    settings = timm_settings.settings_from_args(args)
    task = AdvBNTask(timm.create_model(MODEL, num_classes=2), torch.nn.CrossEntropyLoss(), verbose=False,
                     settings=settings)
    assert task.policy is not None and task.policy.config.mean == [0.5] * 3 and task.policy.config.std == [0.25] * 3
    seen = []
    task.get_trainable_module().register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    task.train()
    images = torch.rand(2, 3, 32, 32)
    result = task((images - 0.5) / 0.25, torch.tensor([0, 1]))
    assert result["output"].shape == (6, 2) and {"loss_clean", "loss_jsd", "loss_adv"} <= set(result)
    torch.testing.assert_close(seen[0][:2], (images - 0.5) / 0.25, rtol=1e-5, atol=1e-5)  # clean rows as loaded
    result["loss"].backward()
    with pytest.raises(ValueError, match="--aug-splits"):
        timm_settings.check_timm_args(parser.parse_args(["--data-dir", str(tmp_path), "--aug-splits", "3"]), settings)


def _warm_up_task(start_epoch: int = 1) -> AdvBNTask:
    torch.manual_seed(0)
    return AdvBNTask(timm.create_model(MODEL, num_classes=2), torch.nn.CrossEntropyLoss(), verbose=False,
                     settings=AdvBNSettings(advbn=AdvBNConfig(layer="layer2", steps=1), start_epoch=start_epoch))


def _aux(task: AdvBNTask) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in timm_task.unwrap_model(task.get_trainable_module()).named_parameters()
            if ".aux_bn." in n}


def _batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(n)]


def test_aux_bn_kept_exactly_during_warm_up():
    """--advbn-start-epoch 1 with SGD (weight decay + momentum): the aux BN parameters do not move during epoch 0
    (no zero term outside DDP: their gradients stay None and the optimizer skips them); they train from epoch 1."""
    task = _warm_up_task()
    aux = _aux(task)
    before = {n: p.detach().clone() for n, p in aux.items()}
    opt = torch.optim.SGD(task.get_trainable_module().parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    task.train()
    for epoch, batches in ((0, _batches(3)), (1, _batches(2, seed=1))):
        task.set_epoch(epoch)
        for x, y in batches:
            result = task(x, y)
            opt.zero_grad()
            result["loss"].backward()
            opt.step()
            if epoch == 0:
                assert "loss_adv" not in result
                for n, p in aux.items():
                    assert p.grad is None and torch.equal(p, before[n]), n
    assert any(not torch.equal(p, before[n]) for n, p in aux.items() if n.endswith("weight"))
    assert all(p in opt.state for p in aux.values())


def test_aux_bn_and_optimizer_state_during_warm_up_under_ddp(tmp_path):
    """One-process gloo DDP (find_unused_parameters=False): prepare_distributed takes timm's device_ids=[cpu device];
    the zero term gives the aux BNs zero gradients; watch_optimizer keeps the optimizer off them (values and state);
    without it the values still come back exactly before each forward, at update_ema and in checkpoints."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        for watch in (True, False):
            task = _warm_up_task()
            aux = _aux(task)
            before = {n: p.detach().clone() for n, p in aux.items()}
            task.prepare_distributed(device_ids=[torch.device("cpu")])  # as timm's train.py passes it
            ddp = task.get_trainable_module()
            assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel) and not ddp.find_unused_parameters
            opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
            if watch:
                task.watch_optimizer(opt)
            task.train()
            task.set_epoch(0)
            for x, y in _batches(3):
                for n, p in aux.items():
                    assert torch.equal(p, before[n]), n  # exact at every forward
                result = task(x, y)
                opt.zero_grad()
                result["loss"].backward()
                assert all(p.grad is not None and not p.grad.any() for p in aux.values())  # DDP's zero term
                opt.step()
                moved = any(not torch.equal(p, before[n]) for n, p in aux.items())
                assert moved != watch  # unwatched: weight decay moved them, until the next restore
                task.update_ema()
                assert all(torch.equal(p, before[n]) for n, p in aux.items())
            state = task.get_checkpoint_state()
            for n in aux:
                torch.testing.assert_close(state["task_state"][AUX_STATE_KEY][n], before[n], rtol=0, atol=0)
            assert watch == all(p not in opt.state for p in aux.values())
            task.set_epoch(1)
            for x, y in _batches(2, seed=1):
                result = task(x, y)
                opt.zero_grad()
                result["loss"].backward()
                opt.step()
            assert "loss_adv" in result
            assert any(not torch.equal(p, before[n]) for n, p in aux.items() if n.endswith("weight"))
    finally:
        dist.destroy_process_group()
