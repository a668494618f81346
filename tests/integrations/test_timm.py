"""The ``advbn-aug train`` / ``advbn-aug timm-train`` commands and the packaging of ``advbn_aug.integrations``; the
timm integration's modules are tested in tests/integrations/timm/."""

from __future__ import annotations

from pathlib import Path

import pytest

from advbn_aug.integrations.timm import task as timm_task

from .._timm import COMMON

REPO = Path(__file__).resolve().parents[2]


def test_cli_subcommands(image_folder, tmp_path, capsys):
    """advbn-aug train / timm-train: help lists the derived flags; bad flags are usage errors; train runs."""
    from advbn_aug.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: advbn-aug train" in out and "--advbn-token-clamp-min" in out
    assert main(["timm-train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: advbn-aug timm-train" in out and "--advbn-dual-bn | --advbn-no-dual-bn" in out
    for argv, message in ((["timm-train"], "advbn-aug timm-train: error: --timm-train PATH/TO/train.py is required"),
                          (["train", "--data-dir", str(tmp_path / "missing")],
                           "advbn-aug train: error: --data-dir is not a directory"),
                          (["train", "--data-dir", str(image_folder), "--advbn-steps", "-2"],
                           "advbn-aug train: error: --advbn-steps -2: steps must be an integer >= 0")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    assert main(["train", "--data-dir", str(image_folder), *COMMON, "--epochs", "1", "--output", str(tmp_path),
                 "--experiment", "cli"]) == 0
    assert (tmp_path / "cli" / "last.pth.tar").is_file()


def test_setup_finds_every_package():
    """The distribution ships every advbn_aug package, found rather than listed, and integrations/ (with its
    subpackages) as advbn_aug.integrations."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_advbn_setup", REPO / "setup.py")
    setup_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_py)  # __name__ is not __main__: defines packages() without calling setup()
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "advbn_aug").rglob("__init__.py")}
    found |= {"advbn_aug." + ".".join(p.parent.relative_to(REPO).parts)
              for p in (REPO / "integrations").rglob("__init__.py")}
    assert set(setup_py.packages()) == found
    assert {"advbn_aug.feature", "advbn_aug.recipe.core", "advbn_aug.integrations.timm"} <= found
    assert timm_task.__name__ == "advbn_aug.integrations.timm.task"
