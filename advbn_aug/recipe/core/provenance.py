"""Which code produced a number: the git commit (and whether the package differed from it) of the running code,
recorded in every ``result.json`` and in each evaluation mode's entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["code_version"]

_CODE_VERSION: dict[str, Any] | None = None


def code_version() -> dict[str, Any]:
    """The git commit of the code this process imported, read once (at the first call, which ``run_recipe`` makes
    before any work): ``{"commit": sha or None, "dirty": bool or None}``. ``dirty``: tracked files of the package
    differed from the commit; ``None`` values outside a git checkout (an installed wheel: ``version`` then says
    which)."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        import subprocess

        from advbn_aug import __version__

        root = Path(__file__).resolve().parents[2]  # the advbn_aug package (this file: advbn_aug/recipe/core/)
        info: dict[str, Any] = {"commit": None, "dirty": None, "version": __version__}
        try:
            info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                            check=True, timeout=20).stdout.strip()
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                                    cwd=root.parent, capture_output=True, text=True, check=True, timeout=20).stdout
            info["dirty"] = any(line[3:].startswith(("advbn_aug/", "integrations/")) for line in status.splitlines())
        except (OSError, subprocess.SubprocessError):
            pass
        _CODE_VERSION = info
    return dict(_CODE_VERSION)
