"""Robustness metrics: accuracy per corruption and severity, mean corruption accuracy / error, and the corruption
errors of Hendrycks & Dietterich (ICLR 2019) normalised by a baseline model.

Accuracy tables are ``{corruption: {severity: accuracy}}`` with accuracies in [0, 1]; errors are ``1 - accuracy``.

- ``CE_c = sum_s E_{s,c} / sum_s E^base_{s,c}`` and ``mCE`` its mean over corruptions.
- ``relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean)`` and ``relative mCE``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ALEXNET_ERRORS", "ALEXNET_CLEAN_ERROR", "Baseline", "accuracy", "mean_corruption_accuracy",
    "corruption_error", "relative_corruption_error", "summarize", "load_baseline",
]

# AlexNet top-1 error on ImageNet-C, averaged over severities 1..5 (hendrycks/robustness, used for mCE).
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592,
    "contrast": 0.853204, "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
# AlexNet clean top-1 error on the ImageNet validation set (torchvision AlexNet: 56.522% top-1 accuracy).
ALEXNET_CLEAN_ERROR = 0.43478

AccuracyTable = Mapping[str, Mapping[int, float]]


@dataclass
class Baseline:
    """Errors of the model that CE normalises by.

    ``errors[c][s]`` are per-severity errors; ``mean_errors[c]`` an error averaged over severities 1..5 (used only
    when per-severity errors are missing, e.g. the published AlexNet table).
    """

    name: str
    clean_error: float | None = None
    errors: dict[str, dict[int, float]] = field(default_factory=dict)
    mean_errors: dict[str, float] = field(default_factory=dict)

    @classmethod
    def alexnet(cls) -> Baseline:
        """The published ImageNet-C AlexNet baseline (15 corruptions, mean over 5 severities)."""
        return cls("alexnet", ALEXNET_CLEAN_ERROR, {}, dict(ALEXNET_ERRORS))

    def sum_errors(self, corruption: str, severities: list[int]) -> float | None:
        """``sum_s E^base_{s,c}`` over ``severities``, or ``None`` when the baseline lacks them."""
        per = self.errors.get(corruption, {})
        if per and all(s in per for s in severities):
            return float(sum(per[s] for s in severities))
        if corruption in self.mean_errors and sorted(severities) == [1, 2, 3, 4, 5]:
            return 5.0 * float(self.mean_errors[corruption])
        return None


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of predicted classes ``(N,)`` or logits ``(N, K)`` against ``labels (N,)``."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must have the same length")
    if labels.size == 0:
        raise ValueError("cannot compute accuracy of zero samples: evaluate at least one image")
    return float((predictions == labels).mean())


def mean_corruption_accuracy(table: AccuracyTable) -> float:
    """Mean accuracy over all (corruption, severity) cells."""
    cells = [float(a) for per in table.values() for a in per.values()]
    if not cells:
        raise ValueError("empty accuracy table: evaluate at least one corruption and severity")
    return float(np.mean(cells))


def corruption_error(errors: Mapping[int, float], baseline_sum: float) -> float:
    """``CE = sum_s E_s / sum_s E^base_s`` with the baseline sum over the same severities."""
    return float(sum(errors.values()) / baseline_sum)


def relative_corruption_error(errors: Mapping[int, float], clean_error: float, baseline_sum: float,
                              baseline_clean_error: float) -> float:
    """``sum_s (E_s - E_clean) / sum_s (E^base_s - E^base_clean)`` over the severities in ``errors``."""
    denom = baseline_sum - len(errors) * baseline_clean_error
    return float(sum(e - clean_error for e in errors.values()) / denom)


def summarize(table: AccuracyTable, clean_accuracy: float | None = None,
              baseline: Baseline | None = None) -> dict[str, object]:
    """All summary numbers of one evaluation (JSON-ready).

    Keys: ``mean_corruption_accuracy``, ``mean_corruption_error``, ``per_corruption_accuracy`` (mean over
    severities), ``per_severity_accuracy``; with a baseline: ``ce``, ``mce``, and with clean errors on both sides
    ``relative_ce``, ``relative_mce``. mCE averages the corruptions the baseline covers (listed in
    ``mce_corruptions``).
    """
    mca = mean_corruption_accuracy(table)
    severities = sorted({int(s) for per in table.values() for s in per})
    out: dict[str, object] = {
        "mean_corruption_accuracy": mca,
        "mean_corruption_error": 1.0 - mca,
        "per_corruption_accuracy": {c: float(np.mean(list(per.values()))) for c, per in table.items()},
        "per_severity_accuracy": {
            s: float(np.mean([per[s] for per in table.values() if s in per])) for s in severities
        },
    }
    if baseline is None:
        return out
    ce: dict[str, float] = {}
    rel: dict[str, float] = {}
    clean_error = None if clean_accuracy is None else 1.0 - clean_accuracy
    for c, per in table.items():
        errors = {int(s): 1.0 - float(a) for s, a in per.items()}
        base_sum = baseline.sum_errors(c, sorted(errors))
        if base_sum is None or base_sum <= 0:
            continue
        ce[c] = corruption_error(errors, base_sum)
        if clean_error is not None and baseline.clean_error is not None:
            denom = base_sum - len(errors) * baseline.clean_error
            if abs(denom) > 1e-12:
                rel[c] = relative_corruption_error(errors, clean_error, base_sum, baseline.clean_error)
    out["baseline"] = baseline.name
    out["ce"] = ce
    out["mce"] = float(np.mean(list(ce.values()))) if ce else None
    out["mce_corruptions"] = list(ce)
    if rel:
        out["relative_ce"] = rel
        out["relative_mce"] = float(np.mean(list(rel.values())))
    return out


def load_baseline(source: str | Path) -> Baseline:
    """``"alexnet"`` for the published ImageNet-C table, or the path of a result JSON written by
    :func:`advbn_aug.eval.evaluate_corruptions` (its ``accuracy`` table and ``clean_accuracy``)."""
    if str(source).lower() == "alexnet":
        return Baseline.alexnet()
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"baseline file {path} does not exist: pass 'alexnet' or the results.json of an earlier evaluation"
        )
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "accuracy" not in data:
        raise ValueError(
            f"baseline file {path} has no 'accuracy' table: pass the results.json written by advbn-aug eval"
        )
    errors = {c: {int(s): 1.0 - float(a) for s, a in per.items()} for c, per in data["accuracy"].items()}
    clean = data.get("clean_accuracy")
    name = str(data.get("name") or path.stem)
    return Baseline(name, None if clean is None else 1.0 - float(clean), errors)
