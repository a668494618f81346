"""visualise.decoder: shapes, the architecture for a feature shape, and the decoder file."""

from __future__ import annotations

import pytest
import torch

from advbn_aug.visualise.decoder import (
    DecoderArch,
    DecoderSource,
    FeatureDecoder,
    decoder_arch_for,
    load_decoder,
    save_decoder,
)

from .._visualise_tiny import MEAN, STD, one_thread  # noqa: F401 (one_thread: autouse)


def test_decoder_upsamples_by_the_scale_into_unit_range():
    dec = FeatureDecoder(DecoderArch(in_channels=8, scale=4, width=16, blocks=1))
    with torch.no_grad():
        out = dec(torch.randn(2, 8, 5, 5) * 3)
    assert out.shape == (2, 3, 20, 20)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(ValueError, match="8, h, w"):
        dec(torch.randn(2, 4, 5, 5))


def test_arch_for_feature_shapes():
    assert decoder_arch_for((16, 32, 32), 32) == DecoderArch(16, 1)
    assert decoder_arch_for((64, 16, 16), 64, width=32) == DecoderArch(64, 4, 32)
    with pytest.raises(ValueError, match="powers of 2"):
        decoder_arch_for((16, 11, 11), 32, layer="layer 'x'")


def test_decoder_file_round_trip_and_errors(tmp_path):
    dec = FeatureDecoder(DecoderArch(8, 2, width=8, blocks=1))
    dec.set_feature_stats(torch.rand(4, 8, 16, 16) * 5)
    src = DecoderSource("tiny", None, "layer1", 32, MEAN, STD)
    path = save_decoder(tmp_path / "d" / "decoder.pt", dec, src, psnr=21.5)
    back, src2, info = load_decoder(path)
    assert src2 == src and info["psnr"] == 21.5
    f = torch.rand(1, 8, 16, 16)
    assert torch.equal(back(f), dec.eval()(f))
    with pytest.raises(FileNotFoundError, match="train-decoder"):
        load_decoder(tmp_path / "missing.pt")
    torch.save({"step": 3}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="not a decoder file"):
        load_decoder(tmp_path / "last.pt")
