"""Checkpoint reading (advbn_aug.eval.checkpoint): unreadable files named with their problem and fix, and the
layouts ``read_state_dict`` accepts (the AdvBN routes of a trained model: tests/feature/test_advbn_routes.py)."""

from __future__ import annotations

import pytest
import torch

from advbn_aug.eval.checkpoint import SAVE_HINT, CheckpointError, load_checkpoint_file, read_state_dict


def _state() -> dict[str, torch.Tensor]:
    """A dual-norm state: clean running mean 0, adversarial copy 3."""
    return {"bn.weight": torch.ones(2), "bn.running_mean": torch.zeros(2),
            "bn.aux_bn.running_mean": torch.full((2,), 3.0)}


def test_unreadable_files_name_the_problem_and_the_fix(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(_state(), good)
    assert torch.equal(load_checkpoint_file(good)["bn.weight"], torch.ones(2))
    cases = {"empty.pt": (b"", r"is empty \(0 bytes\)"),
             "cut.pt": (good.read_bytes()[:200], r"is truncated \(200 bytes: an incomplete torch.save archive"),
             "junk.pt": (b"not a checkpoint at all", r"is corrupt or not a PyTorch checkpoint \(23 bytes")}
    for name, (data, problem) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=rf"^checkpoint {tmp_path / name} {problem}.*: save the model again"):
            load_checkpoint_file(tmp_path / name)
    with pytest.raises(CheckpointError, match="^weights .*empty.pt is empty .*: delete it") as err:
        load_checkpoint_file(tmp_path / "empty.pt", fix="delete it", what="weights")
    assert isinstance(err.value, ValueError) and err.value.path == tmp_path / "empty.pt"


def test_with_fix_keeps_the_problem():
    err = CheckpointError("run/last.pt", "is empty (0 bytes)")
    assert err.fix == SAVE_HINT and str(err) == f"checkpoint run/last.pt is empty (0 bytes): {SAVE_HINT}"
    other = err.with_fix("delete run/last.pt and resume", "resume file")
    assert (other.path, other.problem) == (err.path, err.problem)
    assert str(other) == "resume file run/last.pt is empty (0 bytes): delete run/last.pt and resume"
    assert str(err.with_fix("x")).startswith("checkpoint run/last.pt")


def test_layouts_read_as_a_plain_state_dict(tmp_path):
    state = _state()
    ema = {k: v + 1 for k, v in state.items()}
    torch.save({"model": state}, tmp_path / "model.pt")
    torch.save({"state_dict": {"bn.weight": state["bn.weight"]}, "state_dict_ema": {"bn.weight": ema["bn.weight"]},
                "task_state_ema": {"advbn_aux": {"bn.aux_bn.running_mean": ema["bn.aux_bn.running_mean"]}}},
               tmp_path / "timm.pth.tar")
    got = read_state_dict(tmp_path / "model.pt", "adv")
    assert set(got) == {"bn.weight", "bn.running_mean"} and torch.equal(got["bn.running_mean"], torch.full((2,), 3.))
    assert set(read_state_dict(tmp_path / "model.pt")) == {"bn.weight", "bn.running_mean"}
    got = read_state_dict(tmp_path / "timm.pth.tar", "adv", ema=True)
    assert torch.equal(got["bn.weight"], ema["bn.weight"]) and torch.equal(got["bn.running_mean"], torch.full((2,), 4.))
    assert set(read_state_dict(tmp_path / "timm.pth.tar")) == {"bn.weight"}


def test_read_state_dict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: pass the path of a saved state_dict"):
        read_state_dict(tmp_path / "missing.pt")
    torch.save({"bn.weight": torch.ones(2), "epoch": 3}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match=r"is not a state_dict \(non-tensor entries such as \['epoch'\]\)"):
        read_state_dict(tmp_path / "mixed.pt")
    torch.save({"bn.weight": torch.ones(2)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match=r"plain.pt: the checkpoint holds no adversarial BatchNorm state"):
        read_state_dict(tmp_path / "plain.pt", "adv")
