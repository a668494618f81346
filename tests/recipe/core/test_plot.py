"""advbn_aug.recipe.core.plot: ``results.png`` (clean vs corruption accuracy, accuracy per corruption) and
:func:`save_chart`, the 256-colour PNG every recipe chart is written as."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")


def _stat(mean: float) -> dict[str, float]:
    return {"mean": mean, "std": 0.01, "n": 2}


def _doc() -> dict:
    """Two arms; ``pretrained`` has no mCA and misses one corruption (a row the chart must still draw)."""
    return {"arms": {
        "pretrained": {"clean_acc_jpeg": _stat(0.9), "per_corruption": {"contrast": _stat(0.5)}},
        "advbn": {"clean_acc_jpeg": _stat(0.88), "mca": _stat(0.7),
                  "per_corruption": {"contrast": _stat(0.6), "gaussian_noise": _stat(0.8)}}}}


def test_plot_table_writes_a_palette_png_and_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    from advbn_aug.recipe.core.plot import plot_table

    before = set(plt.get_fignums())
    path = tmp_path / "results.png"
    assert plot_table(_doc(), path) == path
    assert set(plt.get_fignums()) == before  # the chart's figure is closed
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "P"  # quantized to a palette
        assert im.size == (13 * 110, int(4.5 * 110))  # figsize x dpi
        assert len(im.getcolors(256)) > 5  # bars, lines and text, not a blank canvas


def test_save_chart_quantizes_to_at_most_256_colours(tmp_path):
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from advbn_aug.recipe.core.plot import save_chart

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(0).random((64, 64, 3)))  # far more than 256 colours before quantizing
    save_chart(fig, tmp_path / "c.png", dpi=50)
    assert not plt.fignum_exists(fig.number)
    with Image.open(tmp_path / "c.png") as im:
        assert im.mode == "P" and im.size == (100, 100)
        assert 100 < len(im.convert("RGB").getcolors(256 * 256)) <= 256
