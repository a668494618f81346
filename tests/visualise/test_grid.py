"""visualise.grid: the rows' checks before any file is written."""

from __future__ import annotations

import numpy as np
import pytest

from advbn_aug.visualise.grid import Row, write_grid

from .._visualise_tiny import one_thread  # noqa: F401 (one_thread: autouse)


def test_write_grid_rejects_bad_rows(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        Row("a", "a", "", np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="file-name-safe"):
        Row("a b", "a", "", np.zeros((2, 8, 8, 3), dtype=np.uint8))
    row = Row("a", "a", "", np.zeros((2, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="unique"):
        write_grid([row, row], tmp_path)
