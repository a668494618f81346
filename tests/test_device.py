"""Device resolution (advbn_aug.device)."""

from __future__ import annotations

import pytest
import torch

from advbn_aug.device import resolve_device


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_picks_cuda_only_when_available(monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    want = torch.device("cuda" if cuda else "cpu")
    assert resolve_device(None) == want and resolve_device("auto") == want
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_cuda_names_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device 'cuda:1' requested but CUDA is not available: pass --device cpu$"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
