"""Strict construction of config dataclasses from plain dicts (JSON, CLI, HTTP)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from visor.errors import ConfigError

T = TypeVar("T")


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
