"""The per-folder lock file that lets several background processes share the recipe's work (runs, DeepAugment
data)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def _run_lock(folder: Path) -> Iterator[bool]:
    """A per-run lock file so several background processes can share the work; yields False if taken."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / "run.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
                os.kill(pid, 0)
                alive = pid != os.getpid()
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
