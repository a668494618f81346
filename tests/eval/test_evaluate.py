"""The evaluation API, its reports and cache, and the ``advbn-aug eval`` command, on tiny models and images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from advbn_aug.cli import main
from advbn_aug.eval import EvalConfig, EvalResult, evaluate_corruptions, load_model

from .._cifar10c import write_cifar10c

CORR = ("contrast", "gaussian_noise")


class _MeanColour(nn.Module):
    """Predicts class 1 when the image is bright, 0 when dark (on normalised inputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1)


def _data(n: int = 12, size: int = 16):
    labels = np.arange(n) % 2
    rng = np.random.default_rng(0)
    images = np.where(labels[:, None, None, None] == 1, 180, 70) + rng.integers(-30, 30, (n, size, size, 3))
    return images.astype(np.uint8), labels


def _config(tmp_path, **kw) -> EvalConfig:
    base = dict(corruptions=CORR, severities=(1, 5), cache_dir=str(tmp_path / "cache"), progress=False,
                mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), device="cpu", batch_size=5)
    base.update(kw)
    return EvalConfig(**base)


def test_evaluate_writes_reports_and_hits_the_cache(tmp_path):
    x, y = _data()
    out = tmp_path / "report"
    r1 = evaluate_corruptions(_MeanColour(), x, y, _config(tmp_path, output=str(out), name="tiny"))
    assert r1.clean_accuracy == 1.0 and r1.cache_hits == 0 and r1.num_images == 12
    assert set(r1.accuracy) == set(CORR) and set(r1.accuracy["contrast"]) == {1, 5}
    # severity-5 contrast (factor 0.15) pulls bright and dark images to the middle but keeps their order
    assert r1.accuracy["contrast"][5] == 1.0
    for name in ("results.json", "results.md", "heatmap.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["accuracy"]["contrast"]["5"] == 1.0 and saved["config"]["severities"] == [1, 5]
    assert "| contrast |" in (out / "results.md").read_text()
    assert EvalResult.load(out / "results.json").accuracy == r1.accuracy
    r2 = evaluate_corruptions(_MeanColour(), x, y, _config(tmp_path, output=str(out)))
    assert r2.cache_hits == 4 and r2.accuracy == r1.accuracy
    # a baseline results JSON with 50% accuracy everywhere: CE = 0 / (2 * 0.5) for this error-free model
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"name": "coin", "clean_accuracy": 0.9,
                                "accuracy": {c: {"1": 0.5, "5": 0.5} for c in CORR}}))
    r3 = evaluate_corruptions(_MeanColour(), x, y, _config(tmp_path, output=str(out), baseline=str(base)))
    assert r3.summary["ce"] == pytest.approx({c: 0.0 for c in CORR}) and r3.summary["mce"] == 0.0
    assert (out / "baseline.png").is_file() and "mCE (baseline coin)" in (out / "results.md").read_text()


def test_config_round_trip_and_errors(tmp_path):
    cfg = _config(tmp_path, corruptions="benchmark", severities=(3, 1))
    assert cfg.severities == (1, 3) and len(cfg.corruptions) == 15
    data = json.loads(json.dumps(cfg.to_dict()))
    assert EvalConfig.from_dict(data) == cfg
    with pytest.raises(ValueError, match="unknown EvalConfig keys \\['sevs'\\]"):
        EvalConfig.from_dict({"sevs": [1]})
    with pytest.raises(ValueError, match="severity must be an integer in 1..5"):
        EvalConfig(severities=(0,))
    with pytest.raises(ValueError, match="unknown corruption 'haze'.*fog"):
        EvalConfig(corruptions=("haze",))
    with pytest.raises(ValueError, match="needs data_dir"):
        evaluate_corruptions(_MeanColour(), config=EvalConfig(source="cifar10-c", progress=False))


def test_cifar10c_and_imagenet_c_sources(tmp_path):
    from PIL import Image

    x, y = _data(6, 8)
    root = tmp_path / "c10c"
    root.mkdir()
    for c in CORR:
        np.save(root / f"{c}.npy", np.concatenate([x] * 5))
    np.save(root / "labels.npy", np.tile(y, 5))
    r = evaluate_corruptions(_MeanColour(), x, y, _config(tmp_path, source="cifar10-c", data_dir=str(root)))
    assert all(a == 1.0 for per in r.accuracy.values() for a in per.values())
    inet = tmp_path / "inet"
    for c in CORR:
        for s in (1, 5):
            for i, (img, label) in enumerate(zip(x, y)):
                d = inet / c / str(s) / f"class{label}"
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(d / f"{i}.png")
    r = evaluate_corruptions(_MeanColour(), config=_config(tmp_path, source="imagenet-c", data_dir=str(inet)))
    assert r.clean_accuracy is None and r.num_images == 6
    assert all(a == 1.0 for per in r.accuracy.values() for a in per.values())


def test_load_model_checkpoint_and_errors(tmp_path):
    from advbn_aug.models.cifar_resnet import cifar_resnet

    ckpt = tmp_path / "r20.pt"
    torch.save(cifar_resnet(20).state_dict(), ckpt)
    model, mean, std = load_model("resnet20", ckpt)
    assert sum(p.numel() for p in model.parameters()) > 200_000 and len(mean) == len(std) == 3
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model("resnet20", tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="unknown model 'not_a_net'"):
        load_model("not_a_net")


def test_cli_eval_runs(tmp_path, capsys):
    from advbn_aug.models.cifar_resnet import cifar_resnet

    ckpt = tmp_path / "r20.pt"
    torch.save(cifar_resnet(20).state_dict(), ckpt)
    x, y = _data(4, 8)
    root = write_cifar10c(tmp_path / "c10c", x, y)
    out = tmp_path / "cli"
    args = ["eval", "--model", "resnet20", "--checkpoint", str(ckpt), "--source", "cifar10-c", "--data-dir",
            str(root), "--corruptions", "fog", "--severities", "1,2", "--num-images", "4", "--batch-size", "2",
            "--output", str(out), "--device", "cpu", "--seed", "1", "--workers", "0", "--no-progress",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    assert "| fog |" in capsys.readouterr().out
    assert (out / "results.json").is_file() and (out / "heatmap.png").is_file()
    assert main([*args[:-2], "--corruptions", "smog"]) == 2
    assert "unknown corruption 'smog'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--severities", "0,7"])
    assert "severities must be in 1..5" in capsys.readouterr().err
