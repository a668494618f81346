"""``DictConfig``: a dataclass mixin that round-trips through plain dicts and YAML, rejecting unknown keys.

``from_dict`` (and so ``from_yaml``) turns number strings in fields typed ``float`` (``float | None``, ``tuple[float,
...]``, ...) into floats: PyYAML follows YAML 1.1, where a float needs a dot, so ``step_size: 5e-2`` arrives as the
string ``'5e-2'``. Any other string in a field that takes no string raises, naming the field.

Command-line flags derived from a config dataclass (:func:`add_config_arguments`): one ``--{prefix}{field}``
flag per field.

A field's ``metadata`` gives the help text (``"help"``) and optionally ``"metavar"`` and ``"parse"`` (a
``str -> value`` function for annotations not covered below). The annotation gives the conversion:

* ``int``, ``float``, ``str``: the plain type;
* ``bool``: a pair ``--{prefix}name`` / ``--{prefix}no-name`` (``--advbn-dual-bn`` / ``--advbn-no-dual-bn``);
* ``Literal[...]``: ``choices``;
* unions of the above, ``None`` and literals (``str | int``, ``float | None | Literal["auto"]``): the first that
  fits of a literal, ``none``/``off``/``null`` (for ``None``), an integer, a number, a string;
* ``list[X]`` / ``tuple[X, ...]`` of a scalar ``X``: one or more values (``nargs="+"``).

::

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, AdvBNConfig)                  # --advbn-layer, --advbn-eps, ..., --advbn-no-dual-bn
    cfg = config_from_args(parser.parse_args(), AdvBNConfig)   # AdvBNConfig(layer=..., eps=..., ...)

With ``defaults="unset"`` a flag the user did not pass leaves no attribute in the namespace, so
:func:`config_values` returns exactly the options given on the command line (overrides for a config read elsewhere).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import types
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

__all__ = ["ConfigArgumentError", "DictConfig", "UNSET", "add_config_arguments", "config_from_args", "config_values",
           "flag_name"]

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


# --- command-line flags derived from a config dataclass ---
ConfigT = TypeVar("ConfigT")
UNSET = "unset"
_NONE_WORDS = ("none", "off", "null")


class ConfigArgumentError(ValueError):
    """A command-line value that the config rejects; the message names the flag. CLIs report it as a usage error."""


def flag_name(name: str, prefix: str = "advbn-") -> str:
    """The flag of field ``name``: ``flag_name("step_size")`` -> ``--advbn-step-size``."""
    return f"--{prefix}{name.replace('_', '-')}"


class _Switch(argparse.Action):
    """A bool flag pair: ``--{prefix}name`` sets ``True``, ``--{prefix}no-name`` sets ``False``."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, option_string == self.option_strings[0])

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


def _dest(name: str, prefix: str) -> str:
    return f"{prefix}{name}".replace("-", "_")


def _show(value: Any) -> str:
    return "none" if value is None else str(value)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _type_error(name: str, tp: Any) -> TypeError:
    return TypeError(f"config field {name!r}: no command-line conversion for the annotation {tp!r}; give the field "
                     "metadata['parse'] (a str -> value function) or leave it out with exclude=")


def _converter(name: str, tp: Any) -> tuple[Callable[[str], Any], str]:
    """``str -> value`` for a scalar annotation (or a union of them), and a description of what it accepts."""
    literals: list[Any] = []
    kinds: list[type] = []
    allow_none = False
    for m in _members(tp):
        if m is type(None):
            allow_none = True
        elif get_origin(m) is Literal:
            literals += list(get_args(m))
        elif m in (int, float, str):
            kinds.append(m)
        else:
            raise _type_error(name, tp)
    words = [repr(str(v)) for v in literals] + (["'none'"] if allow_none else [])
    kinds_text = {int: "an integer", float: "a number", str: "a string"}
    accepted = [kinds_text[k] for k in (int, float, str) if k in kinds] + words
    expected = accepted[0] if len(accepted) == 1 else ", ".join(accepted[:-1]) + " or " + accepted[-1]

    def parse(text: str) -> Any:
        for v in literals:
            if text == str(v):
                return v
        if allow_none and text.lower() in _NONE_WORDS:
            return None
        for kind in (int, float):
            if kind in kinds:
                try:
                    return kind(text)
                except ValueError:
                    pass
        if str in kinds and text:
            return text
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}")

    parse.__name__ = name
    return parse, expected


def _argument(f: dataclasses.Field, tp: Any) -> dict[str, Any]:
    """``add_argument`` keyword arguments (type, choices, nargs, action) for field ``f`` of type ``tp``."""
    if "parse" in f.metadata:
        return {"type": f.metadata["parse"]}
    if tp is bool:
        return {"action": _Switch}
    origin = get_origin(tp)
    if origin in (list, tuple):
        args = get_args(tp)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise _type_error(f.name, tp)
        parse, _ = _converter(f.name, args[0] if args else str)
        return {"type": parse, "nargs": "+"}
    if origin is Literal:
        values = get_args(tp)
        if all(isinstance(v, str) for v in values):
            return {"type": str, "choices": values}
        by_text = {str(v): v for v in values}
        return {"type": lambda text: by_text.get(text, text), "choices": values}
    parse, expected = _converter(f.name, tp)
    extra = {}
    if len(_members(tp)) > 1 and (type(None) in _members(tp) or any(get_origin(m) is Literal for m in _members(tp))):
        extra["accepts"] = expected
    return {"type": parse, **extra}


def add_config_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                         prefix: str = "advbn-", exclude: Collection[str] = (),
                         defaults: Mapping[str, Any] | str | None = None) -> None:
    """Add one ``--{prefix}{name}`` flag per field of the dataclass ``cls`` to ``parser`` (a parser or a group).

    Args:
        parser: where the flags go.
        cls: the config dataclass; help text from each field's ``metadata["help"]``, conversion from its annotation.
        prefix: flag prefix (``"advbn-"``: ``--advbn-step-size``; the namespace attribute is ``advbn_step_size``).
        exclude: field names that get no flag.
        defaults: ``None``: the fields' defaults; a mapping: other defaults for some fields; ``"unset"``
            (:data:`UNSET`): flags the user does not pass leave no attribute (see :func:`config_values`).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"add_config_arguments needs a dataclass, got {cls!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(exclude) - set(fields))
    if unknown:
        raise ValueError(f"exclude names unknown {cls.__name__} fields {unknown}; fields: {sorted(fields)}")
    overrides: Mapping[str, Any] = {}
    if isinstance(defaults, str):
        if defaults != UNSET:
            raise ValueError(f"defaults must be None, a mapping of field defaults or {UNSET!r}, got {defaults!r}")
    elif defaults is not None:
        overrides = defaults
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"defaults names unknown {cls.__name__} fields {unknown}; fields: {sorted(fields)}")
    hints = get_type_hints(cls)
    for name, f in fields.items():
        if name in exclude or not f.init:
            continue
        kwargs = _argument(f, hints[name])
        tp_is_bool = kwargs.get("action") is _Switch
        accepts = kwargs.pop("accepts", None)
        default = overrides.get(name, _field_default(f))
        notes = [accepts] if accepts else []
        if default is not dataclasses.MISSING:
            notes.append(f"default: {_show(default)}")
        help_text = str(f.metadata.get("help", name.replace("_", " ")))
        help_text = (help_text + (f" ({'; '.join(notes)})" if notes else "")).replace("%", "%%")
        if defaults == UNSET:
            kwargs["default"] = argparse.SUPPRESS
        elif default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        if "metavar" in f.metadata and "action" not in kwargs:
            kwargs["metavar"] = f.metadata["metavar"]
        flags = [flag_name(name, prefix)] + ([flag_name(f"no_{name}", prefix)] if tp_is_bool else [])
        parser.add_argument(*flags, dest=_dest(name, prefix), help=help_text, **kwargs)


def config_values(args: argparse.Namespace, cls: type, *, prefix: str = "advbn-") -> dict[str, Any]:
    """The values of ``cls``'s fields found in ``args`` (with ``defaults="unset"``: the flags the user passed)."""
    return {f.name: getattr(args, _dest(f.name, prefix)) for f in dataclasses.fields(cls)
            if hasattr(args, _dest(f.name, prefix))}


def _culprits(cls: type, values: dict[str, Any], base: Any) -> list[str]:
    """The options in ``values`` that ``cls`` rejects on their own (for naming the flag in an error)."""
    try:
        reference = base if base is not None else cls()
    except (TypeError, ValueError):
        return []
    bad = []
    for name, value in values.items():
        try:
            dataclasses.replace(reference, **{name: value})
        except (TypeError, ValueError):
            bad.append(name)
    if bad:
        return bad
    return [n for n, v in values.items() if getattr(reference, n) != v]  # a combination: name every change


def config_from_args(args: argparse.Namespace, cls: type[ConfigT], *, prefix: str = "advbn-",
                     base: ConfigT | None = None) -> ConfigT:
    """Build ``cls`` from the flags of :func:`add_config_arguments` in ``args``.

    Fields without a value in ``args`` (excluded, or not passed with ``defaults="unset"``) come from ``base`` (an
    instance of ``cls``) or the field defaults. Raises :class:`ConfigArgumentError` (a ``ValueError``) naming the
    flag when the config rejects a value.
    """
    values = config_values(args, cls, prefix=prefix)
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except ValueError as e:
        flags = ", ".join(f"{flag_name(n, prefix)} {_show(values[n])}" for n in _culprits(cls, values, base))
        raise ConfigArgumentError(f"{flags}: {e}" if flags else str(e)) from e
