"""timm integration: AdvBNTask, the self-contained trainer (single process, torchrun/gloo, resume), the train.py
launcher (task API and legacy loop) against stand-in train.py files, the error messages, the ``advbn-aug train`` /
``advbn-aug timm-train`` commands and the packaging of ``advbn_aug.integrations``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.optim import create_optimizer_v2
from timm.task import resume_task_checkpoint

from advbn_aug.feature.config import AdvBNConfig
from advbn_aug.integrations.timm import launcher, trainer
from advbn_aug.integrations.timm import settings as timm_settings
from advbn_aug.integrations.timm import task as timm_task
from advbn_aug.integrations.timm.task import AUX_STATE_KEY, AdvBNSettings, AdvBNTask

REPO = Path(__file__).resolve().parents[2]
MODEL = "test_resnet"
COMMON = ["--model", MODEL, "--num-classes", "2", "--img-size", "32", "-b", "4", "--lr", "0.01", "--device", "cpu",
          "--workers", "0", "--log-interval", "1", "--advbn-steps", "1", "--warmup-epochs", "0"]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """``root/{train,validation}/{a,b}/*.png``: 4 train and 2 validation images per class, 40x40 RGB."""
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("validation", 2)):
        for c, shade in (("a", 60), ("b", 190)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(shade, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(image_folder, tmp_path_factory) -> dict:
    """One in-process trainer run: AugMix splits + JSD + EMA + channels_last, 1 epoch."""
    out = tmp_path_factory.mktemp("out")
    result = trainer.main(["--data-dir", str(image_folder), *COMMON, "--epochs", "1", "--output", str(out),
                                "--experiment", "run", "--aug-splits", "3", "--jsd-loss", "--model-ema",
                                "--model-ema-decay", "0.5", "--channels-last"])
    return {"result": result, "dir": Path(result["output_dir"])}


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")


class TestTrainer:
    def test_runs_with_augmix_jsd_ema_and_saves_plain_checkpoints(self, trained):
        """The trainer trains through AdvBNTask; checkpoints hold plain weights plus the aux BN state."""
        task = trained["result"]["task"]
        assert isinstance(task, AdvBNTask) and task.advbn is not None and task.has_ema()
        assert trained["result"]["epoch"] == 0 and trained["result"]["metric"] is not None
        ck = torch.load(trained["dir"] / "last.pth.tar", map_location="cpu", weights_only=False)
        assert ck["epoch"] == 0
        for key in ("state_dict", "state_dict_ema"):
            assert not [k for k in ck[key] if "aux_bn" in k]
        aux = ck["task_state"][AUX_STATE_KEY]
        assert aux and all(".aux_bn." in k for k in aux) and ck["task_state_ema"][AUX_STATE_KEY].keys() == aux.keys()
        _assert_same_state(ck["state_dict"], task.plain_state_dict())
        # the adversarial BN copies were trained separately from the clean ones
        k = next(k for k in aux if k.endswith("running_mean"))
        assert not torch.equal(aux[k], ck["state_dict"][k.replace(".aux_bn.", ".")])

    def test_checkpoint_loads_strictly_in_timm(self, trained):
        """``timm.create_model(checkpoint_path=...)`` loads the checkpoint (strict; the EMA weights by default)."""
        ck = torch.load(trained["dir"] / "last.pth.tar", map_location="cpu", weights_only=False)
        model = timm.create_model(MODEL, num_classes=2, checkpoint_path=str(trained["dir"] / "last.pth.tar"))
        _assert_same_state(model.state_dict(), ck["state_dict_ema"])
        plain = timm.create_model(MODEL, num_classes=2)
        plain.load_state_dict(ck["state_dict"], strict=True)

    def test_resume_restores_aux_bn_and_continues(self, trained, image_folder):
        """``--resume`` restores model, aux BNs and optimizer; training continues at the next epoch (here with AMP)."""
        last = trained["dir"] / "last.pth.tar"
        ck = torch.load(last, map_location="cpu", weights_only=False)
        task = AdvBNTask(timm.create_model(MODEL, num_classes=2), torch.nn.CrossEntropyLoss(), verbose=False)
        opt = create_optimizer_v2(task.get_trainable_module(), opt="sgd", lr=0.1, weight_decay=2e-5)
        assert resume_task_checkpoint(task, str(last), optimizer=opt, log_info=False) == 1
        state = task.get_trainable_module().state_dict()
        _assert_same_state({k: state[k] for k in ck["task_state"][AUX_STATE_KEY]}, ck["task_state"][AUX_STATE_KEY])
        _assert_same_state(task.plain_state_dict(), ck["state_dict"])

        result = trainer.main(["--data-dir", str(image_folder), *COMMON, "--epochs", "2", "--output",
                                    str(trained["dir"].parent), "--experiment", "run", "--aug-splits", "3",
                                    "--jsd-loss", "--resume", str(last), "--amp", "--amp-dtype", "bfloat16"])
        assert result["epoch"] == 1
        assert (trained["dir"] / "checkpoint-1.pth.tar").is_file()
        assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1

    def test_plain_checkpoint_resumes_with_fresh_aux_bn(self, trained):
        """A plain timm checkpoint (no task_state) loads; aux BNs start as copies of the clean ones."""
        ck = torch.load(trained["dir"] / "last.pth.tar", map_location="cpu", weights_only=False)
        task = AdvBNTask(timm.create_model(MODEL, num_classes=2), torch.nn.CrossEntropyLoss(), verbose=False)
        task.load_checkpoint_state(ck["state_dict"])
        state = task.get_trainable_module().state_dict()
        k = next(k for k in state if ".aux_bn." in k and k.endswith("running_var"))
        torch.testing.assert_close(state[k], ck["state_dict"][k.replace(".aux_bn.", ".")])

    def test_torchrun_two_processes_identical_weights(self, image_folder, tmp_path):
        """torchrun --nproc_per_node 2 (gloo): a clean warm-up epoch then an AdvBN epoch; ranks end identical."""
        script = tmp_path / "run_rank.py"
        script.write_text(textwrap.dedent(f"""
            import os, sys, torch
            from advbn_aug.integrations.timm import trainer
            result = trainer.main(sys.argv[1:])
            task = result["task"]
            torch.save({{"plain": task.plain_state_dict(), "full": task.get_trainable_module().module.state_dict(),
                         "epoch": result["epoch"], "adv": task.adversarial_active}},
                       os.path.join({str(tmp_path)!r}, "rank" + os.environ["RANK"] + ".pt"))
        """))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(script),
               "--data-dir", str(image_folder), *COMMON, "-b", "2", "--epochs", "2", "--advbn-start-epoch", "1",
               "--output", str(tmp_path), "--experiment", "ddp"]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-4000:]
        r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
        assert r0["epoch"] == r1["epoch"] == 1 and r0["adv"] and r1["adv"]
        _assert_same_state(r0["full"], r1["full"])
        assert any(".aux_bn." in k for k in r0["full"])
        assert "loss_adv" in proc.stderr + proc.stdout
        model = timm.create_model(MODEL, num_classes=2, checkpoint_path=str(tmp_path / "ddp" / "last.pth.tar"))
        _assert_same_state(model.state_dict(), r0["plain"])

    def test_bad_flags_give_clear_errors(self, image_folder, capsys):
        with pytest.raises(SystemExit):
            trainer.parse_args(["--data-dir", str(image_folder), "--jsd-loss"])
        assert "--jsd-loss needs --aug-splits" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            trainer.parse_args(["--data-dir", str(image_folder / "missing")])
        assert "--data-dir is not a directory" in capsys.readouterr().err
        with pytest.raises(ValueError, match="'layerX' is not a module of ResNet"):
            trainer.main(["--data-dir", str(image_folder), *COMMON, "--epochs", "1", "--advbn-layer", "layerX",
                               "--output", str(image_folder.parent)])


# ------------------------------------------------------------------------------------------------ the launcher
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
        _assert_same_state(model.state_dict(), ck["state_dict_ema"])

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


def test_imagenet_recipe_flags_dry_run(image_folder, tmp_path):
    """recipes/imagenet/run_all.sh's shared flags on a tiny ImageFolder: the weight-0 control arm keeps the prefix
    (stem + layer1) frozen and trains the rest; the step schedule flags are accepted."""
    torch.manual_seed(0)
    init = timm.create_model(MODEL, num_classes=2)
    torch.save(init.state_dict(), tmp_path / "init.pth")
    recipe = ["--epochs", "2", "--opt", "sgd", "--lr", "0.001", "--momentum", "0.9", "--weight-decay", "1e-4",
              "--sched", "step", "--decay-epochs", "1", "--decay-rate", "0.1", "--smoothing", "0"]
    result = trainer.main(["--data-dir", str(image_folder), *COMMON, *recipe, "--output", str(tmp_path),
                                "--experiment", "control", "--initial-checkpoint", str(tmp_path / "init.pth"),
                                "--aug-splits", "3", "--jsd-loss", "--advbn-layer", "layer1", "--advbn-weight", "0"])
    ckpt = torch.load(Path(result["output_dir"]) / "last.pth.tar", map_location="cpu", weights_only=False)
    state = ckpt["state_dict"]
    assert set(state) == set(init.state_dict())
    before = init.state_dict()
    prefix = [k for k in state if k.startswith(("conv1", "bn1", "layer1.")) and k.endswith("weight")]
    assert prefix and all(torch.equal(state[k], before[k]) for k in prefix), "the control arm moved the prefix"
    assert any(not torch.equal(state[k], before[k]) for k in state if k.startswith(("layer3", "fc", "head"))
               and k.endswith("weight"))


# ------------------------------------------------------------------------------------------------ aux BNs in a warm-up
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
        _assert_same_state({k: r0[epoch][k] for k in params}, {k: r1[epoch][k] for k in params})
    torch.manual_seed(0)
    init = timm.create_model(MODEL, num_classes=2).state_dict()
    aux = [k for k in r0[0] if ".aux_bn." in k and k.endswith(("weight", "bias"))]
    assert aux
    for k in aux:
        torch.testing.assert_close(r0[0][k], init[k.replace(".aux_bn.", ".")], rtol=0, atol=0)
    assert any(not torch.equal(r0[1][k], r0[0][k]) for k in aux)


# ------------------------------------------------------------------------------------------------ --split-bn
_OLD_TIMM = pytest.mark.skipif(timm_settings.timm_version() < timm_settings.SPLIT_BN_VERSION,
                               reason="--split-bn needs timm >= 1.0.31 (test_split_bn_refused_on_old_timm)")


@_OLD_TIMM
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


@_OLD_TIMM
def test_split_bn_check_for_policies(tmp_path):
    """With --advbn-policy, --split-bn is allowed exactly when every advbn feature has dual_bn: false."""
    from advbn_aug.policy import PolicyConfig

    args = trainer.build_parser().parse_args(["--data-dir", str(tmp_path)])
    args.split_bn = True
    on = AdvBNSettings(advbn=None, policy=PolicyConfig(features=[{"type": "advbn", "layer": "layer1"}]))
    off = AdvBNSettings(advbn=None, policy=PolicyConfig(features=[{"type": "advbn", "dual_bn": False}]))
    with pytest.raises(ValueError, match="dual_bn: false"):
        timm_settings.check_timm_args(args, on)
    timm_settings.check_timm_args(args, off)
    timm_settings.check_timm_args(args, AdvBNSettings(advbn=AdvBNConfig(dual_bn=False)))


def test_split_bn_refused_on_old_timm(tmp_path, monkeypatch):
    """timm < 1.0.31 (inside the supported range) converts BatchNormAct2d wrongly under --split-bn: refused, naming
    the version to install; without --split-bn the same timm is accepted."""
    args = trainer.build_parser().parse_args(["--data-dir", str(tmp_path)])
    monkeypatch.setattr(timm_settings, "timm_version", lambda: (1, 0, 30))
    timm_settings.check_timm_args(args, AdvBNSettings(advbn=AdvBNConfig(dual_bn=False)))
    args.split_bn = True
    with pytest.raises(ValueError, match=r"--split-bn needs timm >= 1\.0\.31 \(this is 1\.0\.30\).*'timm>=1\.0\.31'"):
        timm_settings.check_timm_args(args, AdvBNSettings(advbn=AdvBNConfig(dual_bn=False)))


# ------------------------------------------------------------------------------------------------ flags, CLI, packaging
def test_advbn_flags_cover_every_config_field():
    """--advbn-* holds one flag per AdvBNConfig field (derived) plus the task's own; settings read them all."""
    args = trainer.build_parser().parse_args(
        ["--data-dir", ".", "--advbn-token-clamp-min", "0", "--advbn-dual-ln", "--advbn-no-check-finite",
         "--advbn-capture", "copy", "--advbn-clamp-min", "none", "--advbn-no-freeze-prefix", "--advbn-weight", "0.5"])
    s = timm_settings.settings_from_args(args)
    assert s.advbn == AdvBNConfig(token_clamp_min=0.0, dual_ln=True, check_finite=False, capture="copy",
                                  clamp_min=None, freeze_prefix=False)
    assert s.weight == 0.5
    args.advbn_no_dual_bn = True  # the attribute name before the derived flags, e.g. from timm's -c config.yaml
    with pytest.raises(ValueError, match="config key advbn_no_dual_bn: true is now advbn_dual_bn: false"):
        timm_settings.settings_from_args(args)


def test_cli_subcommands(image_folder, tmp_path, capsys):
    """advbn-aug train / timm-train: help lists the derived flags; bad flags are usage errors; train runs."""
    from advbn_aug.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: advbn-aug train" in out and "--advbn-token-clamp-min" in out
    assert main(["timm-train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: advbn-aug timm-train" in out and "--advbn-dual-bn | --advbn-no-dual-bn" in out
    for argv, message in ((["timm-train"], "advbn-aug timm-train: error: --timm-train PATH/TO/train.py is required"),
                          (["train", "--data-dir", str(tmp_path / "missing")],
                           "advbn-aug train: error: --data-dir is not a directory"),
                          (["train", "--data-dir", str(image_folder), "--advbn-steps", "-2"],
                           "advbn-aug train: error: --advbn-steps -2: steps must be an integer >= 0")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    assert main(["train", "--data-dir", str(image_folder), *COMMON, "--epochs", "1", "--output", str(tmp_path),
                 "--experiment", "cli"]) == 0
    assert (tmp_path / "cli" / "last.pth.tar").is_file()


def test_setup_finds_every_package():
    """The distribution ships every advbn_aug package, found rather than listed, and integrations/ (with its
    subpackages) as advbn_aug.integrations."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_advbn_setup", REPO / "setup.py")
    setup_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_py)  # __name__ is not __main__: defines packages() without calling setup()
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "advbn_aug").rglob("__init__.py")}
    found |= {"advbn_aug." + ".".join(p.parent.relative_to(REPO).parts)
              for p in (REPO / "integrations").rglob("__init__.py")}
    assert set(setup_py.packages()) == found
    assert {"advbn_aug.feature", "advbn_aug.recipe.core", "advbn_aug.integrations.timm"} <= found
    assert timm_task.__name__ == "advbn_aug.integrations.timm.task"
