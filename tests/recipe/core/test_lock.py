"""recipe.core.lock: the run lock is taken, refused while a live process holds it, taken over from a dead one (or a
stale file of this process), and made_once waits for the holder."""

from __future__ import annotations

import os
import subprocess
import sys

import advbn_aug.recipe.core.lock as lock
from advbn_aug.recipe.core.lock import made_once, run_lock


def test_lock_is_taken_and_released(tmp_path):
    folder = tmp_path / "run"
    with run_lock(folder) as mine:
        assert mine and (folder / "run.lock").read_text() == str(os.getpid())
    assert not (folder / "run.lock").exists()


def test_a_live_holder_is_refused(tmp_path):
    (tmp_path / "run.lock").write_text(str(os.getppid()))  # a live process other than this one
    with run_lock(tmp_path) as mine:
        assert not mine
    assert (tmp_path / "run.lock").read_text() == str(os.getppid())  # left to its holder


def test_a_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    for stale in (dead, str(os.getpid()), "not a pid"):
        (tmp_path / "run.lock").write_text(stale)
        with run_lock(tmp_path) as mine:
            assert mine, stale
            assert (tmp_path / "run.lock").read_text() == str(os.getpid())
        assert not (tmp_path / "run.lock").exists()


def test_an_empty_lock_is_held_only_briefly(tmp_path):
    """Regression: an empty run.lock (a writer that died between creating it and writing its pid) read as pid 0,
    and kill(0, 0) always succeeds, so the run stayed locked for good. A fresh empty file is still respected (its
    writer may be about to write), an old one is taken over; a non-positive pid is never a live holder."""
    f = tmp_path / "run.lock"
    f.write_text("")
    with run_lock(tmp_path) as mine:
        assert not mine
    old = f.stat().st_mtime - lock.EMPTY_LOCK_GRACE_S - 1
    os.utime(f, (old, old))
    with run_lock(tmp_path) as mine:
        assert mine and f.read_text() == str(os.getpid())
    for bad in ("0", "-1"):
        f.write_text(bad)
        with run_lock(tmp_path) as mine:
            assert mine, bad


def test_made_once_waits_for_the_holder(tmp_path, monkeypatch):
    (tmp_path / "run.lock").write_text(str(os.getppid()))
    waits = []

    def holder_finishes(seconds: float) -> None:
        waits.append(seconds)
        (tmp_path / "run.lock").unlink()

    monkeypatch.setattr(lock.time, "sleep", holder_finishes)
    made = []
    assert made_once(tmp_path, lambda: made.append(1) or "cache", "the cache", poll_seconds=3.0) == "cache"
    assert waits == [3.0] and made == [1]
