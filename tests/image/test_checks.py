"""The input check every image stage shares (advbn_aug.image.checks): errors name the caller and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advbn_aug.image.checks import check_image_batch


def test_float_nchw_with_one_or_three_channels_passes():
    check_image_batch(torch.rand(2, 3, 4, 4), "Stage")
    check_image_batch(torch.rand(1, 1, 4, 4, dtype=torch.float64), "Stage")


def test_errors_name_the_caller_and_the_fix():
    with pytest.raises(TypeError, match=r"^MyStage takes a torch.Tensor \(N, C, H, W\), got ndarray$"):
        check_image_batch(np.zeros((2, 3, 4, 4), np.float32), "MyStage")
    with pytest.raises(ValueError, match=r"MyStage expects \(N, C, H, W\) with C in \{1, 3\}, got shape "
                                         r"\(2, 4, 4, 3\) \(channels-last\? use x.permute\(0, 3, 1, 2\)\)"):
        check_image_batch(torch.rand(2, 4, 4, 3), "MyStage")
    for shape in [(3, 4, 4), (2, 2, 4, 4)]:
        with pytest.raises(ValueError, match=r"got shape .*\)$"):  # no channels-last hint
            check_image_batch(torch.rand(*shape), "MyStage")
    with pytest.raises(TypeError, match=r"MyStage expects a float tensor in \[0, 1\], got torch.uint8; convert uint8 "
                                        r"images with x.float\(\) / 255"):
        check_image_batch(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "MyStage")
