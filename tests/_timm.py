"""Shared by the timm integration tests: the tiny timm model, the trainer flags of every run, the exact state
comparison and the skip for timm versions without a correct --split-bn."""

from __future__ import annotations

import pytest
import torch

from advbn_aug.integrations.timm import settings as timm_settings

MODEL = "test_resnet"
COMMON = ["--model", MODEL, "--num-classes", "2", "--img-size", "32", "-b", "4", "--lr", "0.01", "--device", "cpu",
          "--workers", "0", "--log-interval", "1", "--advbn-steps", "1", "--warmup-epochs", "0"]

old_timm = pytest.mark.skipif(timm_settings.timm_version() < timm_settings.SPLIT_BN_VERSION,
                              reason="--split-bn needs timm >= 1.0.31 (test_split_bn_refused_on_old_timm)")


def assert_same_state(a: dict, b: dict) -> None:
    """The two state dicts hold the same keys and bit-identical tensors."""
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")
