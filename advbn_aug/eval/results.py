"""The result of a corruption evaluation (:class:`EvalResult`), shared by :mod:`advbn_aug.eval.evaluate`, which
makes it, and :mod:`advbn_aug.eval.report`, which writes it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EvalResult"]


@dataclass
class EvalResult:
    """Accuracies of one evaluation. ``accuracy[corruption][severity]`` in [0, 1]; ``summary`` from
    :func:`advbn_aug.eval.metrics.summarize`; ``cache_hits`` counts generated sets read from the cache."""

    name: str
    clean_accuracy: float | None
    accuracy: dict[str, dict[int, float]]
    summary: dict[str, Any]
    config: dict[str, Any]
    num_images: int
    cache_hits: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (severity keys become strings in JSON; :meth:`from_dict` turns them back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        data = dict(data)
        data["accuracy"] = {c: {int(s): float(a) for s, a in per.items()} for c, per in data["accuracy"].items()}
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> EvalResult:
        """Read a ``results.json`` written by :func:`advbn_aug.eval.report.write_report`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
