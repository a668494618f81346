"""Result types of the evaluations: :class:`EvalResult` (corruptions; made by :mod:`advbn_aug.eval.evaluate`,
written by :mod:`advbn_aug.eval.report`) and :class:`StylizedResult` (:mod:`advbn_aug.eval.stylized`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advbn_aug.eval.fingerprint import mismatch_text, pin_mismatches

__all__ = ["EvalResult", "StylizedResult", "strength_keys"]


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


@dataclass
class StylizedResult:
    """Accuracy on a stylised subset: ``accuracy[strength]`` and ``clean_accuracy`` (the same images unstylised)
    in [0, 1]; ``generation_seconds`` is the time spent running the network (0 when every set was cached).

    ``sha256[strength]``: :func:`~advbn_aug.eval.fingerprint.array_sha256` of the stylised images evaluated;
    ``set_sha256``: :func:`~advbn_aug.eval.fingerprint.parts_sha256` of them (keys ``f"{s:g}"``), the set's
    identity; ``expected_sha256``: the pinned hashes it was checked against (``None``: not checked)."""

    name: str
    num_images: int
    clean_accuracy: float
    accuracy: dict[float, float]
    config: dict[str, Any]
    cache_hits: int = 0
    generation_seconds: float = 0.0
    seconds: float = 0.0
    sha256: dict[float, str] = field(default_factory=dict)
    set_sha256: str = ""
    expected_sha256: dict[float, str] | None = None

    def mismatch_warning(self) -> str | None:
        """A warning naming both hashes of each strength whose images differ from its pin; ``None`` when none does."""
        bad = pin_mismatches(strength_keys(self.sha256), strength_keys(self.expected_sha256 or {}))
        return mismatch_text("the Stylized-CIFAR-10 set", bad, "strength") if bad else None

    @property
    def matches_expected(self) -> bool | None:
        """Whether every pinned strength was generated as pinned; ``None`` when no evaluated strength is pinned."""
        return None if not set(self.sha256) & set(self.expected_sha256 or {}) else self.mismatch_warning() is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (strength keys become strings in JSON)."""
        expected = None if self.expected_sha256 is None else strength_keys(self.expected_sha256)
        return {**self.__dict__, "accuracy": strength_keys(self.accuracy), "sha256": strength_keys(self.sha256),
                "expected_sha256": expected, "matches_expected": self.matches_expected}

    def to_markdown(self) -> str:
        """A Markdown section: accuracy (%) on the clean subset and at each style strength."""
        c = self.config
        lines = [f"## Stylized-CIFAR-10: {self.name}", "",
                 f"- images: {self.num_images} (class-balanced test subset, seed {c['seed']}); style pool: PACS "
                 f"{c['style_domain']}; cached sets: {self.cache_hits}/{len(self.accuracy)}; set sha256 "
                 f"`{self.set_sha256}`" + ("" if (w := self.mismatch_warning()) is None else f"\n- **{w}**"), "",
                 "| set | accuracy | drop vs clean |", "|---|---|---|",
                 f"| clean subset | {100 * self.clean_accuracy:.2f} | – |"]
        for s, a in self.accuracy.items():
            lines.append(f"| strength {s:g} | {100 * a:.2f} | {100 * (self.clean_accuracy - a):.2f} |")
        return "\n".join(lines) + "\n"

    def write(self, output_dir: str | Path) -> list[Path]:
        """Write ``stylized.json`` and ``stylized.md`` into ``output_dir`` (created); returns their paths."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "stylized.json", out / "stylized.md"]
        paths[0].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        paths[1].write_text(self.to_markdown())
        return paths


def strength_keys(per_strength: dict[float, Any]) -> dict[str, Any]:
    """Style-strength keys as in JSON: ``{0.5: v, 1.0: w}`` -> ``{"0.5": v, "1": w}``."""
    return {f"{s:g}": v for s, v in per_strength.items()}
