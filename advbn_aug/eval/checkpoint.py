"""Read a model checkpoint for evaluation, through the clean or the adversarial BatchNorms.

A model trained with AdvBN and saved while attached (``torch.save(model.state_dict())``) holds ``<name>.aux_bn.*``
keys; a timm checkpoint written through :class:`~advbn_aug.integrations.advbn_timm.AdvBNTask` holds them under
``task_state['advbn_aux']``. :func:`read_state_dict` turns either (or a plain ``state_dict``) into a plain one with
the chosen BatchNorms in place, loadable strictly into the un-attached architecture.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..dual_norm import Route, select_bn_state

__all__ = ["read_state_dict", "AUX_STATE_KEY"]

AUX_STATE_KEY = "advbn_aux"  # where AdvBNTask checkpoints keep the adversarial BatchNorm copies


def _load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # timm checkpoints also pickle their argparse Namespace
        return torch.load(path, map_location="cpu", weights_only=False)


def read_state_dict(path: str | Path, bn: Route = "clean", *, ema: bool = False) -> dict[str, torch.Tensor]:
    """The plain ``state_dict`` of checkpoint ``path`` with the ``"clean"`` or ``"adv"`` BatchNorms.

    Accepts a bare ``state_dict``, ``{"state_dict": ...}`` (timm; ``ema=True`` reads ``state_dict_ema``) with the
    aux copies in ``task_state['advbn_aux']``, or ``{"model": ...}``; a ``module.`` (DDP) prefix is removed.
    ``bn="adv"`` raises ``ValueError`` when the checkpoint holds no adversarial copies.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: pass the path of a saved state_dict")
    ck = _load(path)
    if not isinstance(ck, Mapping):
        raise ValueError(f"{path} holds a {type(ck).__name__}, not a state_dict: save model.state_dict()")
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
        raise ValueError(f"{path} is not a state_dict (non-tensor entries such as {bad[:3]})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        return select_bn_state(state, bn)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
