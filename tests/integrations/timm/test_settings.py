"""advbn_aug.integrations.timm.settings: the --advbn-* flags (one per AdvBNConfig field) and the checks of timm flags
and versions against them (--split-bn)."""

from __future__ import annotations

import pytest

from advbn_aug.feature.config import AdvBNConfig
from advbn_aug.integrations.timm import settings as timm_settings
from advbn_aug.integrations.timm import trainer
from advbn_aug.integrations.timm.task import AdvBNSettings

from ..._timm import old_timm


@old_timm
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
