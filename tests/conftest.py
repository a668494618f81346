import os

import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data():
    """The shared data folder (../shared/data); skips where a checkout has none."""
    from advbn_aug.datasets.cifar10 import shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / "weights").is_dir():
        pytest.skip("../shared/data not present (set $ADVBN_DATA)")
    return root


@pytest.fixture(scope="session")
def pacs_root():
    """The shared PACS folder (../shared/data/pacs); skips where a checkout has none."""
    from advbn_aug.datasets.pacs import resolve_pacs_root

    try:
        return resolve_pacs_root(None)
    except FileNotFoundError:
        pytest.skip("shared PACS (../shared/data/pacs) not present")
