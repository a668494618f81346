"""Optional dependencies: which pip extra brings which module, the ImportError that names it, and lazy attributes.

``pip install advbn-aug`` gives the core (the hook plugins, ``Policy``, the image augmenters); robustness
evaluation needs ``[eval]`` (OpenCV, SciPy, matplotlib) and the recipes ``[recipes]``. Packages whose modules need an
extra call :func:`require` before importing it, and packages that re-export such modules resolve those names on
first use (:func:`lazy_getattr`), so ``import advbn_aug`` never imports an optional dependency.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DISTRIBUTIONS", "require", "lazy_getattr"]

# import name -> the distribution that provides it (what the error tells the user to install)
DISTRIBUTIONS: dict[str, str] = {
    "cv2": "opencv-python-headless",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
    "onnxruntime": "onnxruntime",
}


def require(feature: str, extra: str, *modules: str) -> None:
    """Import each of ``modules``; if any is missing raise an ``ImportError`` such as
    ``advbn_aug.eval needs opencv-python-headless, scipy: pip install 'advbn-aug[eval]'``."""
    missing: list[tuple[str, ImportError]] = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append((name, exc))
    if missing:
        needed = ", ".join(DISTRIBUTIONS.get(name, name) for name, _ in missing)
        raise ImportError(f"{feature} needs {needed}: pip install 'advbn-aug[{extra}]'") from missing[0][1]


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) for ``package``: ``names`` maps an attribute to the relative module
    that defines it (``{"evaluate_corruptions": ".eval"}``); a key that is itself a submodule (``{"eval": ".eval"}``)
    returns that module. The module is imported on first access, so its optional dependencies are only needed then."""

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(target, package)
        return module if target.rsplit(".", 1)[-1] == name else getattr(module, name)

    return __getattr__
