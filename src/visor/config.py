"""Strict construction of config dataclasses from plain dicts (JSON, CLI, HTTP)."""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from visor.errors import ConfigError

T = TypeVar("T")

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in JSON visor reads from users (cards, configs)."""


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[Any] = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(text: str | bytes, where: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for data from users: invalid or too deeply nested JSON raises :class:`ConfigError`."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ConfigError(f"{where} nests arrays or objects more than {max_depth} deep") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ConfigError(f"{where} is not valid JSON: {e}") from None
    if json_depth(value) > max_depth:
        raise ConfigError(f"{where} nests arrays or objects more than {max_depth} deep")
    return value


def suggest(name: str, options: Iterable[str]) -> str:
    """' Did you mean X?' for the closest option, or ''."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


def check_keys(given: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Raise ConfigError naming the first unknown key and its closest allowed key."""
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} in {where}.{suggest(key, allowed)}")


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str | None = None) -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and missing required ones."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__} must be an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    where = where or cls.__name__
    check_keys(data, fields, where)
    missing = [
        n for n, f in fields.items()
        if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing key(s) {', '.join(map(repr, missing))} in {where}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"invalid {where}: {e}") from None
