"""Evaluation modes added to finished runs (advbn_aug.recipe.cifar10.eval_modes): the adversarial-BatchNorm route,
test-time BatchNorm adaptation and Stylized-CIFAR-10, without retraining, keyed by their own settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ..._recipe_toy import needs_data, toy_config


class _Painter:
    """A stand-in style network (``advbn_aug.eval.stylized.StyleNetwork``): the style vector is the mean colour,
    the transform tints the content towards it (deterministic, no ONNX files needed)."""

    content_size, style_size, cache_id = 32, 32, "test-painter"

    def predict(self, styles: np.ndarray) -> np.ndarray:
        return styles.mean(axis=(1, 2)).astype(np.float32)

    def transform(self, content: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        return np.clip(0.5 * content + 0.5 * vectors[:, None, None, :], 0, 1).astype(np.float32)


@pytest.fixture
def painter(monkeypatch):
    import advbn_aug.eval.stylized as stylized
    import advbn_aug.recipe.cifar10.eval_modes as extras

    monkeypatch.setattr(stylized, "open_network", lambda models=None, threads=1: _Painter())
    monkeypatch.setattr(extras, "_NETWORKS", {})  # no network opened by an earlier test


@needs_data
def test_extras_are_added_to_a_finished_run_without_retraining(tmp_path, painter, monkeypatch):
    import advbn_aug.recipe.core.runner as runner
    from advbn_aug.recipe import code_version, run_recipe
    from advbn_aug.recipe.core.eval_modes import extra_key
    from advbn_aug.recipe.core.table import commit_label

    cfg = toy_config(arms=["standard", "advbn"], corruptions=["contrast"])
    out, runs = tmp_path / "o", tmp_path / "r"
    run_recipe(cfg, output=out, runs_dir=runs, progress=False, cache_dir=str(tmp_path / "c"))
    plain = json.loads((runs / "advbn" / "seed0" / "result.json").read_text())
    assert "extras" not in plain

    def boom(*a, **k):
        raise AssertionError("adding evaluation modes must not retrain")

    monkeypatch.setattr(runner, "train_arm", boom)
    cfg2 = cfg.with_overrides(extras=["adv_route", "tta", "stylized", "decoded"], tta_images=8,
                              stylized={"images": 10, "strengths": [0.5, 1.0]},
                              decoded={"epochs": 1, "train_images": 64, "steps": 1, "images": 20})
    doc = run_recipe(cfg2, output=out, runs_dir=runs, progress=False, cache_dir=str(tmp_path / "c"))
    adv = json.loads((runs / "advbn" / "seed0" / "result.json").read_text())
    std = json.loads((runs / "standard" / "seed0" / "result.json").read_text())
    assert adv["train_key"] == plain["train_key"] and adv["sha256"] == plain["sha256"]
    assert set(adv["extras"]) == {"adv_route", "tta", "stylized", "decoded"}
    assert set(std["extras"]) == {"tta", "stylized", "decoded"}
    dec = adv["extras"]["decoded"]
    assert dec["images"] == 20 and set(dec["clean"]) == set(dec["adv"]) == {"advbn", "adain", "reconstruct"}
    assert "adv" not in std["extras"]["decoded"]
    assert set(dec["sha256"]) == {"advbn", "adain", "reconstruct"}  # the sets it saw, by their pixels
    assert dec["set_sha256"] == std["extras"]["decoded"]["set_sha256"]  # one set, both runs
    assert len(list(runs.glob("_cache/decoded-*/advbn/test_lossless1000.npz"))) == 1  # made once, shared
    assert adv["extras"]["tta"]["key"] == extra_key(cfg2, "tta")
    # the adversarial route is another model: its accuracies are its own, not a copy of the clean route's
    route = adv["extras"]["adv_route"]
    assert 0 <= route["mca"] <= 1 and set(route["per_corruption"]) == {"contrast"}
    assert set(adv["extras"]["stylized"]) == {"clean", "adv", "images", "key", "seconds", "code", "sha256",
                                              "set_sha256"}  # no pin in this config: no expected_sha256
    assert adv["extras"]["stylized"]["set_sha256"] == std["extras"]["stylized"]["set_sha256"]  # one set, both runs
    # each mode records the commit of the code that computed it (it may be newer than the run's own)
    assert all(e["code"] == code_version() for e in adv["extras"].values())
    assert "adv" not in std["extras"]["stylized"]
    assert set(adv["extras"]["stylized"]["clean"]) == {"none", "full", "online"}
    assert set(adv["extras"]["stylized"]["clean"]["none"]["accuracy"]) == {"0.5", "1"}
    tta = adv["extras"]["tta"]
    assert tta["images"] == 8 and set(tta["modes"]) == {"none", "full", "online"}
    # adaptation changes what the model predicts on a corrupted set; "none" is the plain model
    assert tta["modes"]["full"] != tta["modes"]["none"] or tta["modes"]["online"] != tta["modes"]["none"]
    # the committed copy has them too, and the table has the evaluation-mode sections
    archived = json.loads((out / "runs" / "advbn" / "seed0" / "result.json").read_text())
    assert archived["extras"] == adv["extras"]
    assert "mca_adv" in doc["modes"]["advbn"] and "mca_tta_full" in doc["evidence"]["advbn_vs_standard"]
    md = (out / "results.md").read_text()
    assert "## Evaluation modes" in md and "mCA, adversarial BN" in md and "## Paired differences" in md
    label = commit_label(code_version())
    assert f"evaluated {label}, modes: adv_route {label}, decoded {label}" in md
    # a third call finds nothing missing and evaluates nothing
    monkeypatch.setattr(runner, "evaluate_extras", boom)
    run_recipe(cfg2, output=out, runs_dir=runs, progress=False, cache_dir=str(tmp_path / "c"))


def test_stylized_records_the_set_and_warns_when_it_differs_from_the_pin(tmp_path, painter, monkeypatch, caplog):
    """Every Stylized entry records the sha256 of the set it saw; with the config's pin (``stylized_sha256``), a set
    generated otherwise is evaluated all the same, logged with both hashes and recorded as not matching."""
    import logging
    from types import SimpleNamespace

    import torch

    import advbn_aug.eval.stylized as stylized
    from advbn_aug.eval.fingerprint import parts_sha256
    from advbn_aug.models.cifar_resnet import cifar_resnet
    from advbn_aug.recipe.cifar10.eval_modes import _stylized
    from advbn_aug.recipe.core.eval_modes import extra_key

    colours = [(200, 30, 30), (30, 200, 30)]
    monkeypatch.setattr(stylized, "load_style_pool", lambda root=None, domain="art_painting": [
        np.full((20, 20, 3), c, np.uint8) for c in colours])
    rng = np.random.default_rng(0)
    data = SimpleNamespace(test_x=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), test_y=np.arange(20) % 10)
    torch.manual_seed(0)
    models = {"clean": cifar_resnet(20).eval()}
    base = toy_config(extras=["stylized"], stylized={"images": 10, "strengths": [0.5, 1.0]}, tta_modes=[])

    def run(cfg):
        return _stylized(cfg, models, data, torch.device("cpu"), False, "standard/seed0", str(tmp_path / "c"))

    plain = run(base)
    assert set(plain["sha256"]) == {"0.5", "1"} and plain["set_sha256"] == parts_sha256(plain["sha256"])
    assert "expected_sha256" not in plain and "matches_expected" not in plain
    wrong = "0" * 64
    pinned = base.with_overrides(stylized_sha256={"0.5": wrong, "1": plain["sha256"]["1"]})
    assert extra_key(pinned, "stylized") == extra_key(base, "stylized")  # a pin does not re-evaluate finished runs
    with caplog.at_level(logging.WARNING, logger="advbn_aug.recipe"):
        bad = run(pinned)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        caplog.clear()
        good = run(base.with_overrides(stylized_sha256=plain["sha256"]))
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert bad["matches_expected"] is False and bad["expected_sha256"] == pinned.stylized_sha256
    assert bad["clean"] == plain["clean"] and bad["set_sha256"] == plain["set_sha256"]  # the same numbers
    assert len(warnings) == 1 and "standard/seed0" in warnings[0]
    assert f"strength 0.5: generated {plain['sha256']['0.5']}, pinned {wrong}" in warnings[0]
    assert good["matches_expected"] is True and good["expected_sha256"] == plain["sha256"]


def test_stylized_pin_is_checked_and_its_keys_read_as_in_results():
    from advbn_aug.recipe.cifar10.config import FULL, RecipeConfig

    h = "ab" * 32
    cfg = toy_config(stylized_sha256={0.5: h, 1.0: h})  # YAML reads unquoted keys as numbers
    assert cfg.stylized_sha256 == {"0.5": h, "1": h}
    assert RecipeConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ("AB" * 32, "ab" * 31, 5):
        with pytest.raises(ValueError, match="stylized_sha256"):
            toy_config(stylized_sha256={"1": bad})
    # the full recipe pins the three strengths it evaluates
    assert set(FULL.stylized_sha256) == {f"{s:g}" for s in FULL.stylized["strengths"]}


def test_missing_extras_and_keys():
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS
    from advbn_aug.recipe.core.eval_modes import extra_key, missing_extras

    cfg = toy_config(extras=["adv_route", "tta"])
    assert missing_extras(cfg, DEFAULT_ARMS["standard"], {}) == ["tta"]  # one route without AdvBN
    assert missing_extras(cfg, DEFAULT_ARMS["advbn"], {}) == ["adv_route", "tta"]
    done = {"extras": {"tta": {"key": extra_key(cfg, "tta")}, "adv_route": {"key": extra_key(cfg, "adv_route")}}}
    assert missing_extras(cfg, DEFAULT_ARMS["advbn"], done) == []
    assert missing_extras(cfg.with_overrides(tta_images=7), DEFAULT_ARMS["advbn"], done) == ["tta"]


def test_bad_extras_settings_are_rejected():
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        toy_config(extras=["tta", "imagenet_c"])
    with pytest.raises(ValueError, match="tta_modes"):
        toy_config(extras=["tta"], tta_modes=["fast"])
    with pytest.raises(ValueError, match="strength"):
        toy_config(extras=["stylized"], stylized={"strengths": [2.0]})


def test_tta_subset_is_class_balanced_even_when_the_images_are_sorted_by_class():
    """Regression: the JPEG test set is stored sorted by class, so the first 250 images of the corruption subset are
    two classes; adapting BatchNorm statistics to them cut clean accuracy from 89 % to 42 %."""
    from advbn_aug.recipe.cifar10.eval_modes import tta_subset

    labels = np.repeat(np.arange(10), 200)  # sorted by class, like the shared test_jpeg.npz
    idx = tta_subset(labels, 250)
    assert len(idx) == len(set(idx.tolist())) == 250
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.min() >= 24 and counts.max() <= 26
    for start in range(0, 200, 100):  # every evaluation batch of 100 holds every class 10 times
        assert np.bincount(labels[idx[start:start + 100]], minlength=10).tolist() == [10] * 10
    assert np.array_equal(tta_subset(labels, 250), idx)  # fixed
    assert len(tta_subset(labels[:30], 250)) == 30
