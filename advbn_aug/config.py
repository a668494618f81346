"""``DictConfig``: a dataclass mixin that round-trips through plain dicts and YAML, rejecting unknown keys.

``from_dict`` (and so ``from_yaml``) turns number strings in fields typed ``float`` (``float | None``, ``tuple[float,
...]``, ...) into floats: PyYAML follows YAML 1.1, where a float needs a dot, so ``step_size: 5e-2`` arrives as the
string ``'5e-2'``. Any other string in a field that takes no string raises, naming the field.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

__all__ = ["DictConfig"]

T = TypeVar("T", bound="DictConfig")


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_YAML_HINT = "write the number with a dot in YAML (5.0e-2, not 5e-2: YAML 1.1 reads 5e-2 as a string)"


def _members(tp: Any) -> tuple[Any, ...]:
    """The alternatives of a union annotation (``tp`` itself otherwise)."""
    return get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)


def _float_slot(tp: Any) -> tuple[bool, bool, tuple[Any, ...]] | None:
    """For an annotation admitting ``float`` (directly, or as the items of a list/tuple): ``(items, takes_any_str,
    other_values)`` (``other_values``: its ``Literal`` values, and ``None`` if it takes ``None``); ``None`` when it
    admits no float."""
    members = _members(tp)
    literals = tuple(v for m in members if get_origin(m) is Literal for v in get_args(m))
    literals += (None,) if type(None) in members else ()
    if float in members:
        return False, str in members, literals
    for m in members:
        if get_origin(m) in (list, tuple) and float in tuple(a for a in get_args(m) if a is not Ellipsis):
            return True, False, ()
    return None


@functools.cache
def _float_fields(cls: type) -> dict[str, tuple[bool, bool, tuple[Any, ...]]]:
    try:
        hints = get_type_hints(cls)
    except Exception:  # an annotation that cannot be resolved at run time: convert nothing
        return {}
    slots = {f.name: _float_slot(hints.get(f.name)) for f in dataclasses.fields(cls)}
    return {k: v for k, v in slots.items() if v is not None}


def _to_float(cls_name: str, name: str, value: Any, takes_str: bool, literals: tuple[Any, ...]) -> Any:
    if not isinstance(value, str) or value in literals:
        return value
    if _NUMBER.fullmatch(value.strip()):
        return float(value)
    if takes_str:
        return value
    allowed = ", ".join(["a number", *(repr(v) for v in literals if v is not None)])
    allowed += " or null" if None in literals else ""
    raise ValueError(f"{cls_name}.{name} must be {allowed}, got the string {value!r}; {_YAML_HINT}")


def _parse_numbers(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with number strings in float fields turned into floats (see the module docstring)."""
    out = dict(data)
    for name, (items, takes_str, literals) in _float_fields(cls).items():
        if name not in out:
            continue
        v = out[name]
        if not items:
            out[name] = _to_float(cls.__name__, name, v, takes_str, literals)
        elif isinstance(v, (list, tuple)):
            out[name] = type(v)(_to_float(cls.__name__, f"{name}[{i}]", x, False, ()) for i, x in enumerate(v))
    return out


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
        return cls(**_parse_numbers(cls, data))

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
