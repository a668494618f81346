"""visualise.train: the decoder's loss falls on tiny data, PSNR is reported, interrupted training resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from advbn_aug.visualise.config import DecoderConfig
from advbn_aug.visualise.decoder import load_decoder
from advbn_aug.visualise.source import LayerEncoder
from advbn_aug.visualise.train import psnr, train_decoder

from .._visualise_tiny import MEAN, STD, one_thread, smooth_images, tiny_encoder, tiny_net  # noqa: F401 (one_thread: autouse)


def _cfg(tmp_path, **kw) -> DecoderConfig:
    base = dict(output=str(tmp_path), epochs=4, batch_size=8, lr=1e-2, width=8, blocks=1, progress=False,
                holdout_images=8, save_every=1)
    return DecoderConfig(**{**base, **kw})


def test_psnr_of_known_errors():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 20 dB
    y[1] += 0.01  # MSE 1e-4 -> 40 dB
    assert psnr(y, x).tolist() == pytest.approx([20.0, 40.0], abs=1e-3)


def test_decoder_loss_falls_and_files_are_written(tmp_path):
    train_x, hold_x = smooth_images(32, seed=1), smooth_images(8, seed=2)
    res = train_decoder(_cfg(tmp_path), encoder=tiny_encoder(), train_x=train_x, holdout_x=hold_x,
                        model_name="tiny")
    assert len(res.losses) == 4 and res.steps == 16
    assert res.losses[-1] < 0.7 * res.losses[0], res.losses
    assert 10 < res.psnr < 60
    dec, src, info = load_decoder(tmp_path / "decoder.pt")
    assert src.model == "tiny" and src.layer == "layer1" and info["psnr"] == pytest.approx(res.psnr)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["psnr_db"] == pytest.approx(res.psnr, abs=1e-3) and metrics["num_holdout"] == 8


def test_interrupted_training_resumes_to_the_same_decoder(tmp_path):
    train_x, hold_x = smooth_images(24, seed=3), smooth_images(8, seed=4)
    full = train_decoder(_cfg(tmp_path / "full", epochs=2), encoder=tiny_encoder(), train_x=train_x,
                         holdout_x=hold_x)

    class Crash(LayerEncoder):
        calls = 0

        def __call__(self, x):
            Crash.calls += 1
            if Crash.calls == 10:  # step 5 of 6, in the 2nd epoch (1 stats call, then 2 calls per step)
                raise KeyboardInterrupt
            return super().__call__(x)

    crash = Crash(tiny_net(), "layer1", MEAN, STD, 32)
    with pytest.raises(KeyboardInterrupt):
        train_decoder(_cfg(tmp_path / "cut", epochs=2), encoder=crash, train_x=train_x, holdout_x=hold_x)
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert 0 < state["step"] < 6
    resumed = train_decoder(_cfg(tmp_path / "cut", epochs=2), encoder=tiny_encoder(), train_x=train_x,
                            holdout_x=hold_x)
    assert resumed.steps == full.steps == 6
    for a, b in zip(resumed.decoder.state_dict().values(), full.decoder.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert resumed.psnr == pytest.approx(full.psnr, abs=1e-4)
    # other settings: the old state is ignored and training starts over
    again = train_decoder(_cfg(tmp_path / "cut", epochs=2, lr=5e-3), encoder=tiny_encoder(), train_x=train_x,
                          holdout_x=hold_x)
    assert again.psnr != pytest.approx(full.psnr, abs=1e-4)


def test_bad_inputs_name_the_fix(tmp_path):
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="16x16 px but the encoder works at 32 px"):
        train_decoder(_cfg(tmp_path), encoder=enc, train_x=smooth_images(8, size=16), holdout_x=smooth_images(2))
    with pytest.raises(ValueError, match="--data-dir"):
        DecoderConfig(dataset="folder")
    with pytest.raises(ValueError, match="32 px"):
        DecoderConfig(img_size=64)
    with pytest.raises(ValueError, match="epochs"):
        DecoderConfig(epochs=0)
