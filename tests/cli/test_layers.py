"""``advbn-aug layers MODEL`` (advbn_aug.cli.layers): the candidate table of timm and torchvision models, and
unknown names."""

from __future__ import annotations

import pytest

from advbn_aug.cli import main


def test_cli_layers(capsys):
    assert main(["layers", "resnet18", "--img-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "resnet18 (timm), input (2, 3, 64, 64): 4 candidate AdvBN layers" in out
    rows = [line for line in out.splitlines() if line.startswith("| layer")]
    assert [r.split("|")[1].strip() for r in rows] == ["layer", "layer1", "layer2", "layer3", "layer4"]


def test_cli_marks_inert_preactivation_stages(capsys):
    assert main(["layers", "resnetv2_18", "--img-size", "32", "--num-classes", "4"]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.split("|")] for line in out.splitlines() if line.startswith("| stages.")]
    assert [(r[1], r[6]) for r in rows] == [(f"stages.{k}", "yes") for k in range(4)]
    assert "stages.0 is inert: its output goes only into BatchNorm 'stages.1.blocks.0.norm1'" in out
    assert "e.g. AdvBN('stages.1.blocks.0.norm1')" in out


def test_cli_torchvision_model(capsys):
    assert main(["layers", "mobilenet_v3_small", "--img-size", "64", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "mobilenet_v3_small (torchvision)" in out and "| features.12 " in out


def test_cli_unknown_model(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["layers", "resnet19x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet19x'" in err and "Did you mean" in err and "resnet18" in err
    assert "timm.list_models(" in err


def test_a_vit_is_built_at_the_image_size(capsys):
    assert main(["layers", "vit_tiny_patch16_224", "--img-size", "32", "--num-classes", "4"]) == 0
    out = capsys.readouterr().out
    assert "vit_tiny_patch16_224 (timm), input (2, 3, 32, 32)" in out and "| blocks.0 " in out


def test_a_name_far_from_every_model_gets_no_suggestion(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["layers", "qqqqqqqqqq"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'qqqqqqqqqq'" in err and "Did you mean" not in err and "timm.list_models('*qqqq*')" in err
