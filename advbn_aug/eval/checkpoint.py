"""Read a model checkpoint for evaluation, through the clean or the adversarial BatchNorms.

A model trained with AdvBN and saved while attached (``torch.save(model.state_dict())``) holds ``<name>.aux_bn.*``
keys; a timm checkpoint written through :class:`~advbn_aug.integrations.timm.task.AdvBNTask` holds them under
``task_state['advbn_aux']``. :func:`read_state_dict` turns either (or a plain ``state_dict``) into a plain one with
the chosen BatchNorms in place, loadable strictly into the un-attached architecture. :func:`load_checkpoint_file`
reads any checkpoint file, turning an empty, truncated or garbage file into a :class:`CheckpointError` that names it.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from advbn_aug.feature.dual_norm import Route, select_bn_state

__all__ = ["read_state_dict", "load_checkpoint_file", "CheckpointError", "AUX_STATE_KEY", "SAVE_HINT"]

AUX_STATE_KEY = "advbn_aux"  # where AdvBNTask checkpoints keep the adversarial BatchNorm copies
SAVE_HINT = "save the model again with torch.save(model.state_dict(), path), or pass an intact copy"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (empty, truncated, not written by ``torch.save``, the weights of another
    model); the message names the file (``path``), what is wrong with it (``problem``) and what to do (``fix``)."""

    def __init__(self, path: str | Path, problem: str, fix: str = SAVE_HINT, what: str = "checkpoint"):
        self.path, self.problem, self.fix, self.what = Path(path), problem, fix, what
        super().__init__(f"{what} {path} {problem}: {fix}")

    def with_fix(self, fix: str, what: str | None = None) -> CheckpointError:
        """The same problem with another remedy (e.g. the recipe's: delete the run's file)."""
        return CheckpointError(self.path, self.problem, fix, what or self.what)


def _problem(path: Path) -> str:
    """What is wrong with ``path``, which ``torch.load`` could not read, judged from its bytes."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if size == 0:
        return "is empty (0 bytes)"
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):  # torch.save's zip archive without its directory
        return f"is truncated ({size} bytes: an incomplete torch.save archive, e.g. an interrupted write or copy)"
    return f"is corrupt or not a PyTorch checkpoint ({size} bytes that torch.load cannot read)"


def load_checkpoint_file(path: str | Path, *, fix: str = SAVE_HINT, what: str = "checkpoint",
                         map_location: Any = "cpu", weights_only: bool | None = True) -> Any:
    """``torch.load(path)``; an unreadable file raises :class:`CheckpointError` naming ``what`` and ``path``, the
    problem, and ``fix``. ``weights_only=None``: the safe loader, then the full unpickler for files that pickle
    more than tensors (timm checkpoints hold their argparse ``Namespace``)."""
    path = Path(path)
    try:
        if weights_only is None:
            try:
                return torch.load(path, map_location=map_location, weights_only=True)
            except pickle.UnpicklingError:
                return torch.load(path, map_location=map_location, weights_only=False)
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as err:  # EOFError, zip RuntimeError, UnpicklingError, KeyError, ...: every way a file is bad
        reason = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:120]
        detail = f"{type(err).__name__}: {reason}" if reason else type(err).__name__
        raise CheckpointError(path, f"{_problem(path)} [{detail}]", fix, what) from err


def read_state_dict(path: str | Path, bn: Route = "clean", *, ema: bool = False) -> dict[str, torch.Tensor]:
    """The plain ``state_dict`` of checkpoint ``path`` with the ``"clean"`` or ``"adv"`` BatchNorms.

    Accepts a bare ``state_dict``, ``{"state_dict": ...}`` (timm; ``ema=True`` reads ``state_dict_ema``) with the
    aux copies in ``task_state['advbn_aux']``, or ``{"model": ...}``; a ``module.`` (DDP) prefix is removed.
    ``bn="adv"`` raises ``ValueError`` when the checkpoint holds no adversarial copies.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: pass the path of a saved state_dict")
    ck = load_checkpoint_file(path, weights_only=None)
    if not isinstance(ck, Mapping):
        raise CheckpointError(path, f"holds a {type(ck).__name__}, not a state_dict", SAVE_HINT)
    model_key, task_key = ("state_dict_ema", "task_state_ema") if ema else ("state_dict", "task_state")
    if isinstance(ck.get(model_key), Mapping):
        state = dict(ck[model_key])
        task_state = ck.get(task_key)
        if isinstance(task_state, Mapping) and isinstance(task_state.get(AUX_STATE_KEY), Mapping):
            state.update(task_state[AUX_STATE_KEY])
    elif ema:
        raise ValueError(f"{path} has no {model_key!r} entry: drop ema (the checkpoint holds no EMA weights)")
    elif isinstance(ck.get("model"), Mapping):
        state = dict(ck["model"])
    else:
        state = dict(ck)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(path, f"is not a state_dict (non-tensor entries such as {bad[:3]})", SAVE_HINT)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        return select_bn_state(state, bn)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
