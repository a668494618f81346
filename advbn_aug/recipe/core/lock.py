"""The per-folder lock file that lets several background processes share the recipe's work (runs, DeepAugment
data)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

__all__ = ["run_lock", "made_once"]

T = TypeVar("T")
log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)


EMPTY_LOCK_GRACE_S = 60.0  # an empty lock file younger than this belongs to a writer about to write its pid


def _held(lock: Path) -> bool:
    """Whether ``lock`` belongs to another live process: its pid answers ``kill(pid, 0)``. An empty file (a writer
    between creating it and writing its pid, or one that died right there) counts as held for
    :data:`EMPTY_LOCK_GRACE_S` after it was written, then as stale."""
    text = lock.read_text().strip()
    if not text:
        return time.time() - lock.stat().st_mtime < EMPTY_LOCK_GRACE_S
    pid = int(text)
    if pid <= 0:  # kill(0 or -n, 0) would signal a process group and always succeed
        raise ValueError(f"bad pid {pid} in {lock}")
    os.kill(pid, 0)
    return pid != os.getpid()


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[bool]:
    """A per-run lock file so several background processes can share the work; yields False if taken."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / "run.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                alive = _held(lock)
            except (ValueError, ProcessLookupError, PermissionError, OSError):
                alive = False
            if alive:
                yield False
                return
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def made_once(folder: Path, make: Callable[[], T], what: str, poll_seconds: float = 10.0) -> T:
    """``make()`` under ``folder``'s lock: one process makes (or reads back) a shared cache, concurrent workers wait
    for it and then read it themselves."""
    while True:
        with run_lock(folder) as mine:
            if mine:
                return make()
        log.info("waiting for another process to finish %s in %s", what, folder)
        time.sleep(poll_seconds)
