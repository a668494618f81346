"""Load the PyPI package ``imagecorruptions`` (ImageNet-C parameters) on a modern stack, for comparisons only.

``imagecorruptions`` 1.1.2 imports ``pkg_resources`` (gone from recent setuptools), calls scikit-image's
``gaussian(..., multichannel=True)`` (removed in scikit-image 0.19) and uses ``np.float_`` (removed in NumPy 2).
:func:`load_imagecorruptions` supplies a minimal ``resource_filename`` when ``pkg_resources`` is missing, binds a
``gaussian`` that maps ``multichannel`` to ``channel_axis``, and gives the module a NumPy view with ``float_``,
without downgrading or mutating anything else. It is used by a comparison test and ``bench/corruption_speed.py``;
the project's own corruptions do not depend on it. Install it with ``pip install --no-deps imagecorruptions
scikit-image``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

__all__ = ["load_imagecorruptions"]


def _resource_filename(package: str, resource: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"package {package!r} not found")
    return str(Path(spec.origin).parent / resource)


def _gaussian_compat(gaussian: Any) -> Any:
    def gaussian_multichannel(image: Any, *args: Any, multichannel: bool | None = None, **kwargs: Any) -> Any:
        if multichannel is not None:
            kwargs.setdefault("channel_axis", -1 if multichannel else None)
        return gaussian(image, *args, **kwargs)

    return gaussian_multichannel


class _NumpyWithFloat_:
    """``numpy`` as the old package saw it: every attribute, plus ``float_``."""

    def __getattr__(self, name: str) -> Any:
        import numpy as np

        return np.float64 if name == "float_" else getattr(np, name)


def load_imagecorruptions() -> types.ModuleType:
    """Import ``imagecorruptions`` through the compatibility shim (its ``corrupt(image, corruption_name, severity)``
    and per-corruption functions); ``ImportError`` with the install command when it or scikit-image is absent."""
    try:
        import skimage.filters
    except ImportError as err:
        raise ImportError("the imagecorruptions comparison needs scikit-image: "
                          "pip install --no-deps imagecorruptions scikit-image") from err
    if importlib.util.find_spec("imagecorruptions") is None:
        raise ImportError("imagecorruptions is not installed: pip install --no-deps imagecorruptions scikit-image")
    if "imagecorruptions.corruptions" in sys.modules:
        return sys.modules["imagecorruptions"]
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = _resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    original = skimage.filters.gaussian
    skimage.filters.gaussian = _gaussian_compat(original)  # bound by name when the module imports
    try:
        corruptions = importlib.import_module("imagecorruptions.corruptions")
    finally:
        skimage.filters.gaussian = original
    corruptions.np = _NumpyWithFloat_()
    return importlib.import_module("imagecorruptions")
