"""advbn_aug.integrations.timm.trainer: the self-contained trainer (single process, torchrun/gloo, resume, AugMix/JSD,
EMA), its checkpoints as timm loads them, its flag errors, and the ImageNet recipe's flags on a tiny ImageFolder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from timm.optim import create_optimizer_v2
from timm.task import resume_task_checkpoint

from advbn_aug.integrations.timm import trainer
from advbn_aug.integrations.timm.task import AUX_STATE_KEY, AdvBNTask

from ..._timm import COMMON, MODEL, assert_same_state


@pytest.fixture(scope="module")
def trained(image_folder, tmp_path_factory) -> dict:
    """One in-process trainer run: AugMix splits + JSD + EMA + channels_last, 1 epoch."""
    out = tmp_path_factory.mktemp("out")
    result = trainer.main(["--data-dir", str(image_folder), *COMMON, "--epochs", "1", "--output", str(out),
                                "--experiment", "run", "--aug-splits", "3", "--jsd-loss", "--model-ema",
                                "--model-ema-decay", "0.5", "--channels-last"])
    return {"result": result, "dir": Path(result["output_dir"])}


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
        assert_same_state(ck["state_dict"], task.plain_state_dict())
        # the adversarial BN copies were trained separately from the clean ones
        k = next(k for k in aux if k.endswith("running_mean"))
        assert not torch.equal(aux[k], ck["state_dict"][k.replace(".aux_bn.", ".")])

    def test_checkpoint_loads_strictly_in_timm(self, trained):
        """``timm.create_model(checkpoint_path=...)`` loads the checkpoint (strict; the EMA weights by default)."""
        ck = torch.load(trained["dir"] / "last.pth.tar", map_location="cpu", weights_only=False)
        model = timm.create_model(MODEL, num_classes=2, checkpoint_path=str(trained["dir"] / "last.pth.tar"))
        assert_same_state(model.state_dict(), ck["state_dict_ema"])
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
        assert_same_state({k: state[k] for k in ck["task_state"][AUX_STATE_KEY]}, ck["task_state"][AUX_STATE_KEY])
        assert_same_state(task.plain_state_dict(), ck["state_dict"])

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
        assert_same_state(r0["full"], r1["full"])
        assert any(".aux_bn." in k for k in r0["full"])
        assert "loss_adv" in proc.stderr + proc.stdout
        model = timm.create_model(MODEL, num_classes=2, checkpoint_path=str(tmp_path / "ddp" / "last.pth.tar"))
        assert_same_state(model.state_dict(), r0["plain"])

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
