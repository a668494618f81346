"""``advbn-aug deepaugment`` (advbn_aug.cli.deepaugment): train a network on an .npz, then write a DeepAugment copy."""

from __future__ import annotations

import numpy as np
import pytest

from .._toy_images import wave_images


def test_cli_train_and_generate(tmp_path):
    from advbn_aug.cli import main

    data = tmp_path / "tiny.npz"
    np.savez(data, x=wave_images(12), y=np.arange(12))
    weights = tmp_path / "cae.pt"
    assert main(["deepaugment", "train", "--net", "cae", "--channels", "8", "--data-dir", str(data), "--epochs", "1",
                 "--batch-size", "4", "--output", str(weights)]) == 0
    out = tmp_path / "out.npz"
    assert main(["deepaugment", "generate", "--weights", str(weights), "--data-dir", str(data), "--limit", "10",
                 "--batch-size", "4", "--output", str(out)]) == 0
    z = np.load(out)
    assert z["x"].shape == (10, 32, 32, 3) and z["x"].dtype == np.uint8
    assert np.array_equal(z["y"], np.arange(10))
    with pytest.raises(FileNotFoundError, match="not found"):
        main(["deepaugment", "generate", "--weights", str(tmp_path / "nope.pt"), "--data-dir", str(data),
              "--output", str(out)])


def test_bad_data_files_name_the_problem(tmp_path):
    from advbn_aug.cli import main

    args = ["deepaugment", "train", "--net", "cae", "--channels", "4", "--epochs", "1", "--output",
            str(tmp_path / "cae.pt"), "--data-dir"]
    with pytest.raises(FileNotFoundError, match=r"--data-dir .*missing.npz does not exist"):
        main([*args, str(tmp_path / "missing.npz")])
    np.savez(tmp_path / "no_y.npz", x=wave_images(2))
    with pytest.raises(ValueError, match=r"must hold arrays 'x' \(uint8 \(N, H, W, 3\)\) and 'y'; it has \['x'\]"):
        main([*args, str(tmp_path / "no_y.npz")])
    np.savez(tmp_path / "float.npz", x=wave_images(2).astype(np.float32), y=np.arange(2))
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, H, W, 3\), got float32 \(2, 32, 32, 3\)"):
        main([*args, str(tmp_path / "float.npz")])
    assert not (tmp_path / "cae.pt").exists()
