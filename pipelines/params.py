"""Loading a params.yaml section into a frozen dataclass, with errors that name the bad key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipelines.errors import ParamsError

T = TypeVar("T")
DEFAULT_PARAMS = Path("params.yaml")


def read_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The whole params file as a dict; an absent file reads as empty (every section takes its defaults)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ParamsError(f"{path} must hold a mapping of sections at the top level.")
    return loaded


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ParamsError(f"{where} must be a mapping, got {value!r}.")
        return build_dataclass(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where) if len(inner) == 1 else value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where} must be a list, got {value!r}.")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{where} must be a mapping, got {value!r}.")
        return dict(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ParamsError(f"{where} must be a whole number, got {value!r}.")
    if hint is bool and not isinstance(value, bool):
        raise ParamsError(f"{where} must be true or false, got {value!r}.")
    if hint is str and not isinstance(value, str):
        return str(value)
    return value


def build_dataclass(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build frozen dataclass ``cls`` from ``values``; unknown keys and wrong types raise ParamsError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParamsError(f"{where} has unknown key(s) {unknown}; known keys: {sorted(fields)}.")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{where}: {exc}") from exc


def load_section(cls: type[T], section: str, path: Path = DEFAULT_PARAMS) -> T:
    """Section ``section`` (dotted for nesting, e.g. ``train.churn``) of ``path`` as a ``cls``."""
    node: Any = read_params(path)
    for part in section.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if node is None:
        node = {}
    return build_dataclass(cls, node, f"{Path(path).name}:{section}")


def section_dict(section: str, path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """A params section as a plain dict (for logging), empty when absent."""
    node: Any = read_params(path)
    for part in section.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node or {}
