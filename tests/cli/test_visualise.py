"""`advbn-aug visualise`: flags derived from the config dataclasses, help epilogs, usage errors."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from advbn_aug.cli import main
from advbn_aug.cli import visualise as command
from advbn_aug.config import config_from_args, flag_name
from advbn_aug.visualise.config import DecoderConfig, GridConfig, TestsetConfig

from .._visualise_tiny import one_thread  # noqa: F401 (autouse fixture)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="advbn-aug visualise")
    command.add_arguments(p)
    return p


@pytest.mark.parametrize("tool, cls", [("train-decoder", DecoderConfig), ("grid", GridConfig),
                                       ("make-testset", TestsetConfig)])
def test_every_field_is_a_flag_and_defaults_round_trip(tool, cls, capsys):
    args = _parser().parse_args([tool])
    assert config_from_args(args, cls, prefix="") == cls()
    with pytest.raises(SystemExit):
        main(["visualise", tool, "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help") and flag_name(f.name, "") in text
    assert "examples" in text and "../shared/data" in text


def test_flags_parse_into_the_config():
    args = _parser().parse_args(["grid", "--eps", "0.3", "1.1", "--steps", "2", "--layer", "layer2",
                                 "--ft-checkpoint", "ft.pth", "--no-progress", "--clamp-min", "none"])
    cfg = config_from_args(args, GridConfig, prefix="")
    assert cfg.eps == (0.3, 1.1) and cfg.steps == (2,) and cfg.layer == "layer2" and cfg.ft_checkpoint == "ft.pth"
    assert cfg.progress is False and cfg.clamp_min is None


def test_epilog_example_commands_parse():
    """Every example line of the epilogs is a valid command line of its tool."""
    parser = _parser()
    for tool, text in command._EXAMPLES.items():
        lines = text.replace("\\\n", " ").splitlines()
        examples = [ln.split("advbn-aug visualise ", 1)[1].split() for ln in lines if "advbn-aug visualise " in ln]
        assert examples, tool
        for argv in examples:
            parser.parse_args(argv)


def test_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["visualise", "train-decoder", "--dataset", "folder"])
    assert e.value.code == 2 and "--data-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["visualise", "grid", "--corruption", "rain"])
    assert e.value.code == 2 and "unknown corruption" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["visualise"])


def test_timm_resnet18_on_an_image_folder_end_to_end(tmp_path, capsys):
    """train-decoder and grid from the command line on a timm ResNet-18 (random weights) at 64 px, images from a
    folder with class subfolders: layer1 is 1/4 of the image side, so the decoder upsamples x4."""
    from PIL import Image

    from .._visualise_tiny import smooth_images

    folder = tmp_path / "images"
    for i, img in enumerate(smooth_images(10, size=80, seed=9)):
        (folder / f"class{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"class{i % 3}" / f"{i}.png")
    common = ["--model", "resnet18", "--num-classes", "3", "--dataset", "folder", "--data-dir", str(folder),
              "--no-progress"]
    rc = main(["visualise", "train-decoder", *common, "--img-size", "64", "--layer", "layer1", "--holdout-images",
               "2", "--epochs", "1", "--batch-size", "4", "--width", "8", "--blocks", "1", "--output",
               str(tmp_path / "dec")])
    assert rc == 0 and "held-out PSNR" in capsys.readouterr().out
    from advbn_aug.visualise.decoder import load_decoder

    dec, src, _ = load_decoder(tmp_path / "dec" / "decoder.pt")
    assert dec.arch.scale == 4 and dec.arch.in_channels == 64 and src.img_size == 64 and src.layer == "layer1"
    rc = main(["visualise", "grid", *common, "--decoder", str(tmp_path / "dec" / "decoder.pt"), "--num-images", "2",
               "--eps", "1.1", "--steps", "1", "--tile-size", "32", "--output", str(tmp_path / "grid")])
    assert rc == 0
    assert len(list((tmp_path / "grid" / "rows").glob("*.png"))) == 9
    rc = main(["visualise", "grid", *common, "--decoder", str(tmp_path / "dec" / "decoder.pt"), "--img-size", "128"])
    assert rc == 2 and "image size 128" in capsys.readouterr().err
