"""The published severity tables (advbn_aug.eval.corruptions.params) and their lookup."""

from __future__ import annotations

import pytest

from advbn_aug.eval.corruptions import CIFAR10_PARAMS, IMAGENET_PARAMS, corruption_params


def test_parameter_tables_spot_values():
    assert CIFAR10_PARAMS["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert IMAGENET_PARAMS["gaussian_noise"] == (0.08, 0.12, 0.18, 0.26, 0.38)
    assert corruption_params("jpeg_compression", 5, "cifar10") == 40
    assert corruption_params("jpeg_compression", 1, "imagenet") == 25
    assert corruption_params("motion_blur", 5, "imagenet") == (20, 15)
    # elastic: fractions of 32 (CIFAR) and of 244 at 224 px (ImageNet), scaled with the image side
    assert corruption_params("elastic_transform", 2, "cifar10") == pytest.approx((1.6, 6.4, 2.24))
    assert corruption_params("elastic_transform", 3, "imagenet") == pytest.approx((244 * 0.05, 2.44, 4.88))
    assert corruption_params("elastic_transform", 3, "imagenet", (112, 112)) == pytest.approx((6.1, 1.22, 2.44))
