"""The evidence forest plot (advbn_aug.recipe.core.evidence_plot): one panel per comparison with evidence, one row per
metric any of them has, nothing written before any comparison has evidence."""

from __future__ import annotations

import numpy as np
from PIL import Image

_COMPARISONS = {"a_vs_b": ("a", "b", "A vs B"), "c_vs_b": ("c", "b", "C vs B"), "d_vs_b": ("d", "b", "D vs B")}
_LABELS = {"clean": "clean", "mca": "mCA", "stylized": "Stylized"}


def _cell(mean: float, lo: float | None = None, hi: float | None = None, n: int = 3) -> dict:
    c = {"mean": mean, "std": 0.01, "n": n, "seeds": list(range(n))}
    if lo is not None:
        c.update(lo=lo, hi=hi, excludes_zero=lo > 0 or hi < 0)
    return c


def test_one_panel_per_comparison_with_evidence(tmp_path):
    from advbn_aug.recipe.core.evidence_plot import plot_evidence

    ev = {"a_vs_b": {"clean": _cell(0.01, -0.01, 0.03), "mca": _cell(0.02, 0.01, 0.03)},
          "c_vs_b": {"mca": _cell(-0.02, n=1)}}  # one seed: a point, no interval
    one = plot_evidence({"a_vs_b": ev["a_vs_b"]}, _COMPARISONS, _LABELS, tmp_path / "one.png")
    two = plot_evidence(ev, _COMPARISONS, _LABELS, tmp_path / "two.png")
    w1, h1 = Image.open(one).size
    w2, h2 = Image.open(two).size
    assert w2 > 1.8 * w1  # d_vs_b has no evidence: two panels side by side, not three
    assert h2 == h1  # the same two rows (stylized is in neither)
    taller = plot_evidence({**ev, "d_vs_b": {"stylized": _cell(0.0, -0.01, 0.01)}}, _COMPARISONS, _LABELS,
                           tmp_path / "three.png")
    assert Image.open(taller).size[1] > h2  # a third row
    pixels = np.asarray(Image.open(two).convert("L"))
    assert pixels.min() < 100 and pixels.max() > 200  # something drawn on a white page


def test_nothing_is_written_without_evidence(tmp_path):
    from advbn_aug.recipe.core.evidence_plot import plot_evidence

    assert plot_evidence({}, _COMPARISONS, _LABELS, tmp_path / "e.png") is None
    assert plot_evidence({"x_vs_y": {"mca": _cell(0.1, 0, 0.2)}}, _COMPARISONS, _LABELS, tmp_path / "e.png") is None
    assert not (tmp_path / "e.png").exists()


def test_panel_title_does_not_read_as_a_fraction_of_seeds():
    """The panel title said 'n = 1/5 seeds' for a comparison with 5 pairs on mCA and 1 on Stylized (read as '1 of
    5'); it now gives the range by row, and one number when every row has the same pairs."""
    from advbn_aug.recipe.core.evidence_plot import panel_seeds

    cells = {"mca": _cell(0.02, 0.01, 0.03, n=5), "stylized": _cell(0.01, n=1)}
    assert panel_seeds(cells, ["clean", "mca", "stylized"]) == "n = 1-5 seeds by row"
    assert panel_seeds(cells, ["mca"]) == "n = 5 seeds"
    assert panel_seeds(cells, ["stylized"]) == "n = 1 seed"
