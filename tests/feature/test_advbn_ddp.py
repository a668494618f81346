"""AdvBN under DistributedDataParallel: 2 CPU processes (gloo) give the same losses and weights as one process."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from advbn_aug import attach
from advbn_aug.models.cifar_resnet import cifar_resnet

STEPS = 3


def _model():
    torch.manual_seed(0)
    model = cifar_resnet(8)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.0  # running statistics stay put, so sequential shards see what parallel ranks see
    return model


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, 2, 4, 3, 16, 16, generator=g)  # step, rank, sample
    y = torch.randint(0, 10, (STEPS, 2, 4), generator=g)
    return x, y


def _worker(rank, init_file, out_dir):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model = _model()
    adv = attach(model, "layer1")
    ddp = DDP(model)
    opt = torch.optim.SGD([p for p in ddp.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    x, y = _data()
    ddp.train()
    losses = []
    for t in range(STEPS):
        opt.zero_grad()
        loss = adv.loss(x[t, rank], y[t, rank], model=ddp)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    torch.save({"losses": losses, "state": adv.detach().state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    model = _model()
    adv = attach(model, "layer1")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    x, y = _data()
    model.train()
    losses = [[], []]
    for t in range(STEPS):
        opt.zero_grad()
        for r in range(2):  # DDP averages gradients over ranks
            loss = adv.loss(x[t, r], y[t, r])
            (loss / 2).backward()
            losses[r].append(loss.item())
        opt.step()
    state = adv.detach().state_dict()

    for r in range(2):
        assert ranks[r]["losses"] == pytest.approx(losses[r], rel=1e-4, abs=1e-5)
    assert losses[0][-1] != losses[0][0]
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):  # counts forwards: 3 per rank vs 6 sequentially
            continue
        torch.testing.assert_close(ranks[0]["state"][k], ranks[1]["state"][k], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0]["state"][k], v, rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def _bypass_worker(rank, init_file, out_dir):
    """adv.loss without model=ddp in a 2-process run: refused before anything runs; with model=ddp, ranks agree."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model = _model()
    adv = attach(model, "layer1", steps=1)
    ddp = DDP(model)
    opt = torch.optim.SGD([p for p in ddp.parameters() if p.requires_grad], lr=0.05)
    x, y = _data()
    ddp.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    errors = []
    for net in (None, model):  # the default and the plain module both bypass the wrapper
        try:
            adv.loss(x[0, rank], y[0, rank], model=net)
        except RuntimeError as err:
            errors.append(str(err))
    unchanged = all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    opt.zero_grad()
    adv.loss(x[0, rank], y[0, rank], model=ddp).backward()
    opt.step()
    torch.save({"errors": errors, "unchanged": unchanged, "state": adv.detach().state_dict()},
               os.path.join(out_dir, f"bypass{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_loss_without_the_ddp_wrapper_is_refused(tmp_path):
    mp.spawn(_bypass_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"bypass{r}.pt", weights_only=True) for r in range(2)]
    for r in ranks:
        assert len(r["errors"]) == 2 and all("2 processes" in e and "model=ddp" in e for e in r["errors"])
        assert r["unchanged"], "the refused call ran a forward"
    for k, v in ranks[0]["state"].items():
        assert torch.equal(v, ranks[1]["state"][k]), k
