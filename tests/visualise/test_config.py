"""visualise.config: the grid settings' errors."""

from __future__ import annotations

import pytest

from advbn_aug.visualise.config import GridConfig


def test_grid_config_errors():
    with pytest.raises(ValueError, match="unknown corruption"):
        GridConfig(corruption="rain")
    with pytest.raises(ValueError, match="eps"):
        GridConfig(eps=(-1.0,))
    with pytest.raises(ValueError, match="severity"):
        GridConfig(severity=7)
