"""advbn_aug.integrations.timm.launcher: timm's train.py patched (task API and legacy loop) against stand-in train.py
files, in process and under torchrun; --export-plain; --split-bn; the error messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from advbn_aug.integrations.timm import launcher
from advbn_aug.integrations.timm.task import AUX_STATE_KEY, AdvBNTask

from ..._timm import MODEL, assert_same_state, old_timm

TASK_TRAIN_PY = '''
"""Stand-in for timm's train.py (task API): global parser, _parse_args, train_one_epoch(epoch, model, loader,
optimizer, args, task=...), main(); device, --split-bn, EMA, compile and DDP set up in timm's order and with
timm's calls (task.prepare_distributed(device_ids=[device], ...) whatever the device)."""
import argparse
import os
import torch
from timm import utils
from timm.layers import convert_splitbn_model
from timm.models import create_model
from timm.task import ClassificationTask, resume_task_checkpoint
from timm.utils import CheckpointSaver
from timm.utils.model import unwrap_model

parser = argparse.ArgumentParser(description="stand-in")
parser.add_argument("--model", default="test_resnet")
parser.add_argument("--num-classes", type=int, default=2)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--output", default="")
parser.add_argument("--device", default="cpu")
parser.add_argument("--split-bn", action="store_true")
parser.add_argument("--no-ddp-bb", action="store_true")
parser.add_argument("--model-ema", action="store_true")
parser.add_argument("--torchcompile", nargs="?", const="inductor", default=None)
parser.add_argument("--resume", default="")
RESULTS = []
STATES = []  # the model's state_dict after each epoch


def _parse_args():
    args = parser.parse_args()
    return args, ""


def train_one_epoch(epoch, model, loader, optimizer, args, task=None, device=None):
    task.train()
    for x, y in loader:
        result = task(x, y)
        optimizer.zero_grad()
        result["loss"].backward()
        optimizer.step()
        task.update_ema()
        RESULTS.append({k: v.item() for k, v in result.items() if k.startswith("loss")})
    STATES.append({k: v.clone() for k, v in unwrap_model(task.get_trainable_module()).state_dict().items()})


def main():
    args, _ = _parse_args()
    device = utils.init_distributed_device(args)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=args.num_classes)
    if args.split_bn:
        model = convert_splitbn_model(model, 2)
    model.to(device=device)
    task = ClassificationTask(model=model, criterion=torch.nn.CrossEntropyLoss(), device=device, verbose=False)
    optimizer = torch.optim.SGD(task.get_trainable_module().parameters(), lr=0.05, momentum=0.9, weight_decay=0.1)
    start = resume_task_checkpoint(task, args.resume, optimizer) if args.resume else 0
    if args.model_ema:
        task.setup_ema(decay=0.5)
    if args.torchcompile:
        task.compile(backend=args.torchcompile)
    if args.distributed:
        task.prepare_distributed(device_ids=[device], broadcast_buffers=not args.no_ddp_bb)
    g = torch.Generator().manual_seed(args.rank)
    loader = [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(2)]
    saver = CheckpointSaver(task.get_trainable_module(), optimizer, args=args, checkpoint_dir=args.output,
                            recovery_dir=args.output, task=task) if args.rank == 0 else None
    for epoch in range(start, args.epochs):
        train_one_epoch(epoch, task.get_trainable_module(), loader, optimizer, args, task=task, device=device)
        if saver is not None:
            saver.save_checkpoint(epoch)
    if args.distributed:
        torch.save(STATES, os.path.join(args.output, f"states{args.rank}.pt"))
        torch.distributed.destroy_process_group()
    return task
'''


LEGACY_TRAIN_PY = '''
"""Stand-in for a pre-task timm train.py: create_model in main, train_one_epoch(epoch, model, loader, opt, loss_fn)."""
import argparse
import torch
from timm.models import create_model

parser = argparse.ArgumentParser(description="legacy stand-in")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--output", default="")
LOSSES = []


def train_one_epoch(epoch, model, loader, optimizer, loss_fn, args):
    model.train()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        LOSSES.append(loss.item())


def main():
    args = parser.parse_args()
    model = create_model("test_resnet", num_classes=2)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    g = torch.Generator().manual_seed(0)
    loader = [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(2)]
    for epoch in range(args.epochs):
        train_one_epoch(epoch, model, loader, optimizer, torch.nn.CrossEntropyLoss(), args)
    torch.save({"state_dict": model.state_dict(), "epoch": args.epochs - 1}, args.output + "/last.pth.tar")
    return model
'''


def _write(tmp_path: Path, text: str, name: str = "train.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


class TestLauncher:
    def test_task_api_train_py_runs_with_advbn(self, tmp_path, monkeypatch):
        """ClassificationTask is swapped for AdvBNTask (EMA + torch.compile + start epoch); checkpoints are plain."""
        train_py = _write(tmp_path, TASK_TRAIN_PY)
        monkeypatch.setattr(sys, "argv", ["pytest"])
        task = launcher.main(["--timm-train", str(train_py), "--output", str(tmp_path), "--epochs", "2",
                                "--model-ema", "--torchcompile", "eager", "--advbn-layer", "layer2",
                                "--advbn-steps", "1", "--advbn-start-epoch", "1", "--advbn-eps", "0.5"])
        assert sys.argv == ["pytest"]
        assert isinstance(task, AdvBNTask) and task.advbn is not None
        cfg = task.advbn.config
        assert (cfg.layer, cfg.steps, cfg.eps) == ("layer2", 1, 0.5)
        results = sys.modules["_advbn_timm_train"].RESULTS
        assert ["loss_adv" in r for r in results] == [False, False, True, True]  # warm-up epoch 0, AdvBN epoch 1
        assert all(r["loss"] == pytest.approx(r["loss_task"] + r.get("loss_adv", 0.0), rel=1e-5) for r in results)
        ck = torch.load(tmp_path / "last.pth.tar", map_location="cpu", weights_only=False)
        assert ck["task_state"][AUX_STATE_KEY] and ck["task_state_ema"][AUX_STATE_KEY]
        model = timm.create_model(MODEL, num_classes=2, checkpoint_path=str(tmp_path / "last.pth.tar"))
        assert_same_state(model.state_dict(), ck["state_dict_ema"])

    def test_legacy_train_py_gets_adversarial_loss(self, tmp_path, monkeypatch):
        """Without the task API, create_model and train_one_epoch's loss_fn are wrapped; --export-plain strips aux."""
        train_py = _write(tmp_path, LEGACY_TRAIN_PY)
        monkeypatch.setattr(sys, "argv", ["pytest"])
        model = launcher.main(["--timm-train", str(train_py), "--output", str(tmp_path), "--epochs", "1",
                                 "--advbn-steps", "1"])
        legacy = sys.modules["_advbn_timm_train"]._advbn_legacy
        assert legacy.advbn is not None and legacy.advbn.model is model
        state = model.state_dict()
        k = next(k for k in state if ".aux_bn." in k and k.endswith("running_mean"))
        assert not torch.equal(state[k], state[k.replace(".aux_bn.", ".")])  # the adversarial BNs were trained
        removed = launcher.main(["--export-plain", str(tmp_path / "last.pth.tar"), str(tmp_path / "plain.pth")])
        assert removed and all(".aux_bn." in r for r in removed)
        timm.create_model(MODEL, num_classes=2, checkpoint_path=str(tmp_path / "plain.pth"))

    def test_errors(self, tmp_path, monkeypatch, capsys):
        """Missing file, train.py without parser/main, unknown layer, conflicting timm flags: clear messages."""
        monkeypatch.setattr(sys, "argv", ["pytest"])
        cases = [
            (["--timm-train", str(tmp_path / "nope.py")], "no such file"),
            (["--timm-train", str(_write(tmp_path, "def main():\n    pass\n", "no_parser.py"))], "has no `parser`"),
            (["--timm-train", str(_write(tmp_path, "import argparse\nparser = argparse.ArgumentParser()\n",
                                         "no_main.py"))], "has no `main`"),
            ([], "--timm-train PATH/TO/train.py is required"),
        ]
        for argv, message in cases:
            with pytest.raises(SystemExit) as e:
                launcher.main(argv)
            assert e.value.code == 2
            assert message in capsys.readouterr().err
        train_py = _write(tmp_path, TASK_TRAIN_PY)
        with pytest.raises(SystemExit):
            launcher.main(["--timm-train", str(train_py), "--output", str(tmp_path), "--split-bn"])
        assert "--split-bn" in capsys.readouterr().err
        with pytest.raises(ValueError, match="'layer9' is not a module of ResNet"):
            launcher.main(["--timm-train", str(train_py), "--output", str(tmp_path), "--advbn-layer", "layer9"])
        with pytest.raises(SystemExit):
            launcher.main(["--timm-train", str(train_py), "--advbn-eps", "-1"])
        assert "eps must be >= 0" in capsys.readouterr().err


def test_launcher_under_torchrun_on_cpu(tmp_path):
    """torchrun --nproc_per_node 2 on CPU (gloo): train.py's task.prepare_distributed(device_ids=[device]) works; the
    aux BNs stay at their initial values through the warm-up epoch (DDP, weight decay, momentum), then train; the
    ranks end identical."""
    train_py = _write(tmp_path, TASK_TRAIN_PY)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "advbn_aug.integrations.timm.launcher", "--timm-train", str(train_py), "--output", str(tmp_path),
           "--epochs", "2", "--advbn-layer", "layer2", "--advbn-steps", "1", "--advbn-start-epoch", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"states{r}.pt", weights_only=True) for r in range(2))
    for epoch in range(2):  # the parameters (BN running statistics are per rank until timm's distribute_bn)
        params = [k for k in r0[epoch] if k.endswith(("weight", "bias"))]
        assert_same_state({k: r0[epoch][k] for k in params}, {k: r1[epoch][k] for k in params})
    torch.manual_seed(0)
    init = timm.create_model(MODEL, num_classes=2).state_dict()
    aux = [k for k in r0[0] if ".aux_bn." in k and k.endswith(("weight", "bias"))]
    assert aux
    for k in aux:
        torch.testing.assert_close(r0[0][k], init[k.replace(".aux_bn.", ".")], rtol=0, atol=0)
    assert any(not torch.equal(r0[1][k], r0[0][k]) for k in aux)


@old_timm
def test_split_bn_with_advbn_no_dual_bn_trains(tmp_path, monkeypatch, capsys):
    """--split-bn is rejected with AdvBN's dual BN, and the message's way out (--advbn-no-dual-bn) trains: the
    adversarial features run through timm's SplitBatchNorm2d."""
    from timm.layers import SplitBatchNorm2d

    train_py = _write(tmp_path, TASK_TRAIN_PY)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    base = ["--timm-train", str(train_py), "--output", str(tmp_path), "--epochs", "1", "--advbn-steps", "1",
            "--split-bn"]
    with pytest.raises(SystemExit) as e:
        launcher.main(base)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--split-bn" in err and "add --advbn-no-dual-bn" in err
    task = launcher.main([*base, "--advbn-no-dual-bn"])
    model = task.get_trainable_module()
    assert task.advbn is not None and not task.advbn.config.dual_bn
    assert any(isinstance(m, SplitBatchNorm2d) for m in model.modules())
    results = sys.modules["_advbn_timm_train"].RESULTS
    assert results and all(np.isfinite(r["loss_adv"]) for r in results)
    ck = torch.load(tmp_path / "last.pth.tar", map_location="cpu", weights_only=False)
    assert any(".aux_bn.0." in k for k in ck["state_dict"])  # timm's own split-BN copies stay in the model
