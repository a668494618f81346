"""recipe.core.provenance: the commit of the running code, whether the package differed from it, read once."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import advbn_aug
import advbn_aug.recipe.core.provenance as provenance
from advbn_aug.recipe.core.provenance import code_version

REPO = Path(advbn_aug.__file__).resolve().parents[1]


@pytest.fixture
def fresh(monkeypatch):
    """code_version reads git again (its cache is restored afterwards)."""
    monkeypatch.setattr(provenance, "_CODE_VERSION", None)


def _fake_git(status: str):
    def run(argv, **kw):
        out = "abc123\n" if argv[1] == "rev-parse" else status
        return SimpleNamespace(stdout=out)
    return run


def test_commit_of_this_checkout_read_once(fresh, monkeypatch):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    info = code_version()
    assert info["commit"] == head and isinstance(info["dirty"], bool)
    assert info["version"] == advbn_aug.__version__
    info["commit"] = "changed"  # a copy: the cache is not changed through it

    def no_git(*a, **kw):
        raise AssertionError("git was run twice")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert code_version()["commit"] == head


@pytest.mark.parametrize("status, dirty", [
    ("", False),
    (" M tests/feature/test_hooks.py\n M README.md\n", False),
    (" M advbn_aug/feature/hooks.py\n", True),
    ("M  integrations/timm/task.py\n", True),
])
def test_dirty_means_a_changed_package_file(fresh, monkeypatch, status, dirty):
    monkeypatch.setattr(subprocess, "run", _fake_git(status))
    assert code_version() == {"commit": "abc123", "dirty": dirty, "version": advbn_aug.__version__}


def test_outside_a_git_checkout_only_the_version(fresh, monkeypatch):
    def no_git(*a, **kw):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert code_version() == {"commit": None, "dirty": None, "version": advbn_aug.__version__}


def test_status_is_read_from_the_repository_root(fresh, monkeypatch):
    """Regression (the move to recipe/core/): git status ran in advbn_aug/ with pathspec '.', so a changed
    integrations/ file never made a run dirty. It must cover the whole checkout (advbn_aug/ and integrations/)."""
    calls = []

    def run(argv, **kw):
        calls.append((argv, Path(kw["cwd"]).resolve()))
        return SimpleNamespace(stdout="abc123\n" if argv[1] == "rev-parse" else "")

    monkeypatch.setattr(subprocess, "run", run)
    code_version()
    (status_argv, status_cwd), = [c for c in calls if c[0][1] == "status"]
    assert status_cwd == REPO and status_argv[-1] == "."
