"""`advbn-aug recipe pacs --tiny` end to end (a stand-in for the ImageNet weights; needs the shared PACS data):
the runs, the exported state dicts and their frozen prefix, both BatchNorm routes, the weight averages (the tiny
preset has weight averaging on) and their evaluation, the floor (pretrained backbone + fitted linear head), the
committed result copies, the table, and a rerun that trains nothing."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture()
def stand_in_weights(tmp_path, monkeypatch):
    """A random tf_efficientnet_lite0 checkpoint in place of the installed ImageNet weights (same architecture)."""
    import timm

    import advbn_aug.models.efficientnet_lite as pretrained

    torch.manual_seed(0)
    path = tmp_path / "lite0.pth"
    torch.save(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict(), path)
    monkeypatch.setattr(pretrained, "efficientnet_lite_weights", lambda variant="lite0": path)
    return path


def test_tiny_recipe_end_to_end(tmp_path, stand_in_weights, pacs_root, monkeypatch):
    import advbn_aug.recipe.core.runner as runner
    from advbn_aug.cli import main
    from advbn_aug.recipe.pacs.config import PACS_TINY
    from advbn_aug.recipe.pacs.data import load_pacs_model

    out, runs = tmp_path / "out", tmp_path / "runs"
    argv = ["recipe", "pacs", "--tiny", "--arms", "pretrained", "standard", "advbn", "--no-progress", "--output",
            str(out), "--runs-dir", str(runs)]
    assert main(argv) == 0
    for name in ("results.json", "results.md", "results.png", "evidence.png", "sha256.txt", "config.yaml"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "results.json").read_text())
    assert doc["benchmark"] == "pacs" and list(doc["arms"]) == ["pretrained", "standard", "advbn"]
    assert doc["missing"] == []
    assert doc["targets"] == ["art_painting", "cartoon", "sketch"]
    assert "advbn_vs_standard" in doc["evidence"]
    fresh, keys = load_pacs_model(PACS_TINY)
    ref = fresh.state_dict()
    for arm in ("pretrained", "standard", "advbn"):
        res = json.loads((runs / arm / "seed0" / "result.json").read_text())
        assert json.loads((out / "runs" / arm / "seed0" / "result.json").read_text()) == res  # committed copy
        assert set(res["acc"]) == {"art_painting", "cartoon", "sketch"} and set(res["images"].values()) == {16}
        state = torch.load(runs / arm / "seed0" / "model.pt", weights_only=True)
        assert list(state) == keys
        for k in keys:  # the prefix up to blocks.1 is the pretrained one in every arm; the head moved
            if k.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")):
                assert torch.equal(state[k], ref[k]), k
        assert not torch.equal(state["classifier.weight"], ref["classifier.weight"])
    adv = json.loads((runs / "advbn" / "seed0" / "result.json").read_text())["extras"]["adv_route"]
    assert set(adv["acc"]) == {"art_painting", "cartoon", "sketch"}
    assert (runs / "advbn" / "seed0" / "model_adv.pt").is_file()
    assert not (runs / "standard" / "seed0" / "model_adv.pt").exists()
    # the weight average: exported, evaluated through both routes (AdvBN), stored apart from the final weights
    for arm in ("standard", "advbn"):
        res = json.loads((runs / arm / "seed0" / "result.json").read_text())
        meta = json.loads((runs / arm / "seed0" / "train.json").read_text())
        assert res["ema"]["decay"] == PACS_TINY.ema_decay and res["ema"]["sha256"] == meta["ema"]["sha256"]
        assert set(res["ema"]["acc"]) == {"art_painting", "cartoon", "sketch"} and "mean_acc" in res["ema"]
        final = torch.load(runs / arm / "seed0" / "model.pt", weights_only=True)
        ema = torch.load(runs / arm / "seed0" / "model_ema.pt", weights_only=True)
        assert list(ema) == keys and not torch.equal(ema["classifier.weight"], final["classifier.weight"])
    assert set(adv["ema"]["acc"]) == {"art_painting", "cartoon", "sketch"}
    assert (runs / "advbn" / "seed0" / "model_ema_adv.pt").is_file()
    assert not (runs / "standard" / "seed0" / "model_ema_adv.pt").exists()
    assert not (runs / "pretrained" / "seed0" / "model_ema.pt").exists()
    assert "ema" not in json.loads((runs / "pretrained" / "seed0" / "result.json").read_text())
    # the floor: the backbone as loaded, a linear head fitted on its features (not the fresh random head)
    floor = torch.load(runs / "pretrained" / "seed0" / "model.pt", weights_only=True)
    assert all(torch.equal(floor[k], ref[k]) for k in keys if not k.startswith("classifier."))
    text = (out / "results.md").read_text()
    assert "128 px" in text and "| advbn | 1 |" in text and "### Weight average (EMA" in text
    assert "not decided yet" in text  # one seed: the headline rule needs two

    def boom(*a, **k):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(runner, "train_arm", boom)
    monkeypatch.setattr(runner, "_evaluate", boom)
    assert main(argv) == 0


def test_leave_one_out_data(pacs_root):
    from advbn_aug.recipe.pacs.config import PACSConfig
    from advbn_aug.recipe.pacs.data import PACSData

    data = PACSData(PACSConfig(protocol="leave_one_out", domain="sketch", train_subset=14, test_images=7), None)
    assert data.train_x.shape == (14, 128, 128, 3) and data.train_x.dtype.name == "uint8"
    assert sorted(data.train_y.tolist()) == sorted(list(range(7)) * 2)  # class-balanced
    assert list(data.tests) == ["sketch"] and len(data.tests["sketch"][1]) == 7
    assert data.val is not None and len(data.val[1]) == 21  # 7 per source domain's crossval list
