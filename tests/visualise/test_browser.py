"""The grid's HTML page in a real headless browser (Debian's Chromium): every <img> loads, the page renders.

Skips when no Chromium is installed (``apt-get install -y chromium``; ``.ci/run`` tries that).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from advbn_aug.visualise.config import GridConfig
from advbn_aug.visualise.gallery import make_grid

from .._visualise_tiny import one_thread, smooth_images, tiny_inverter  # noqa: F401 (one_thread: autouse)

_BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(_BROWSER is None, reason="no headless browser: Chromium is not installed "
                                "(apt-get install -y chromium)")

# counts, after the load event, the <img> elements that decoded to a picture
_PROBE = ("<script>window.addEventListener('load', () => { const all = [...document.images]; "
          "const ok = all.filter(i => i.complete && i.naturalWidth > 0).length; "
          "document.body.setAttribute('data-loaded', ok + '/' + all.length); });</script>")


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [_BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _page(tmp_path) -> tuple:
    images = smooth_images(3, seed=8)
    res = make_grid(GridConfig(output=str(tmp_path / "grid"), num_images=2, eps=(1.1,), steps=(2,), tile_size=24,
                               progress=False), inverter=tiny_inverter(images), images=images[:2],
                    labels=np.array([0, 1]))
    page = res.files.html
    probe = page.with_name("_probe.html")  # next to index.html: the same relative image paths
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    return res, page, probe


def test_every_image_of_the_page_loads(tmp_path):
    res, page, probe = _page(tmp_path)
    n_img = len(re.findall(r"<img ", page.read_text()))
    assert n_img == len(res.rows) + 1
    out = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'data-loaded="(\d+)/(\d+)"', out.stdout)
    assert found, f"no load report in the DOM; browser stderr: {out.stderr[-2000:]}"
    assert (int(found[1]), int(found[2])) == (n_img, n_img)


def test_an_image_that_is_missing_is_caught(tmp_path):
    """The probe itself can fail: delete one row PNG and the count drops."""
    res, page, probe = _page(tmp_path)
    res.files.rows[0].unlink()
    out = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'data-loaded="(\d+)/(\d+)"', out.stdout)
    assert found and int(found[1]) == int(found[2]) - 1


def test_screenshot_is_not_empty(tmp_path):
    from PIL import Image

    _, page, _ = _page(tmp_path)
    shot = tmp_path / "shot.png"
    out = _chromium(tmp_path, "--hide-scrollbars", "--window-size=900,1200", f"--screenshot={shot}", page.as_uri())
    assert shot.is_file(), f"no screenshot; browser stderr: {out.stderr[-2000:]}"
    with Image.open(shot) as im:
        px = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert px.shape[:2] == (1200, 900)
    not_white = (px < 235).any(-1).mean()
    assert not_white > 0.05, f"only {not_white:.1%} of the screenshot is drawn"
    assert px.std() > 20  # pictures and text, not a flat page
