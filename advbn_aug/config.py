"""``DictConfig``: a dataclass mixin that round-trips through plain dicts and YAML, rejecting unknown keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["DictConfig"]

T = TypeVar("T", bound="DictConfig")


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


class DictConfig:
    """Mixin for ``@dataclass`` configs: ``to_dict`` / ``from_dict`` / ``to_yaml`` / ``from_yaml``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML types: nested dataclasses become dicts, tuples become lists."""
        return _lists(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(names)}")
        return cls(**data)

    def to_yaml(self, path: str | Path | None = None) -> str:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls: type[T], text_or_path: str | Path) -> T:
        """Parse YAML text, or read it from a file path."""
        import yaml

        text = str(text_or_path)
        if isinstance(text_or_path, Path) or (("\n" not in text) and Path(text).is_file()):
            text = Path(text_or_path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} YAML must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data)
