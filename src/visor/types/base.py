"""The one base of visor's result types: a declared field spec gives coercion, validation, indexing and JSON.

A result type is a frozen dataclass that declares its fields twice over: as dataclass fields (the
constructor) and as :class:`Field` entries in ``FIELDS`` (in the order they appear in JSON). The
base does the rest, in one place:

* :class:`Columns`: N items as arrays side by side (``Detections``, ``Faces``, ``TextLines``...).
  Each field is coerced to its dtype and per-item shape, every field and every ``data`` entry
  must have N items (else ``ValueError``), ``len()``, indexing with an int, slice, index array
  or boolean mask (a new object of the same type), ``empty()``, ``with_data()``, ``==``.
  JSON: ``{"type", "model", <header>, ITEMS: [{<field key>: value, ..., <data key>: value}]}``.
* :class:`Record`: one record per image (``Moderation``, ``ImageProperties``) or a part of one
  (``DominantColor``, ``Exposure``: ``TYPE`` empty, so no ``type`` or ``model`` in their JSON).
  Values are coerced to ``int`` / ``float`` / ``str`` / ``bool``, fixed-length tuples, tuples or
  dicts of them, or nested result types.

Every result type carries ``model`` (the name of the model that produced it, empty when unknown)
and a ``type`` tag; ``to_dict()`` / ``from_dict()`` round-trip, ``to_json()`` is ``json.dumps`` of
``to_dict()``. ``from_dict`` refuses a malformed document with :class:`~visor.errors.InvalidInput`
(a ``ValueError``); building a result from inconsistent arrays raises ``ValueError``.
JSON has no NaN: a NaN scalar is written as ``null`` and read back as NaN.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from visor.errors import InvalidInput

R = TypeVar("R", bound="Result")
C = TypeVar("C", bound="Columns")
Index = int | slice | np.ndarray | Sequence[int] | Sequence[bool]


@dataclass(frozen=True)
class Field:
    """One declared field of a result type.

    ``dtype``: for :class:`Columns`, a numpy dtype (``np.float32``, ``np.int64``, ``bool``) or ``str``
    (an object array of Python strings); for :class:`Record`, ``int``, ``float``, ``str``, ``bool`` or
    a nested result type. ``shape``: the per-item shape (``None`` = any size, the same for every item;
    for a record, a fixed-length tuple). ``key``: the JSON key (default: ``name``). ``decimals``: rounding
    in JSON. ``optional``: left out of JSON when empty (a per-item size of 0, or a record value of
    None). ``many``: a record value that is a tuple of any length; ``mapping``: a ``dict[str, dtype]``
    (JSON keys sorted). ``computed``: written to JSON from a property, never passed to the constructor.
    ``choices``: the allowed values.
    """

    name: str
    dtype: Any = np.float32
    shape: tuple[int | None, ...] = ()
    key: str | None = None
    decimals: int | None = None
    optional: bool = False
    many: bool = False
    mapping: bool = False
    computed: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def json_key(self) -> str:
        return self.key or self.name


class Result:
    """What every result type shares: the ``type`` tag, ``model``, JSON text."""

    TYPE: ClassVar[str] = ""
    FIELDS: ClassVar[tuple[Field, ...]] = ()

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - defined by Columns and Record
        raise NotImplementedError

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls: type[R], text: str | bytes) -> R:
        return cls.from_dict(json.loads(text))  # type: ignore[attr-defined]

    def _head(self) -> dict[str, Any]:
        return {"type": self.TYPE, "model": self.model} if self.TYPE else {}  # type: ignore[attr-defined]

    @classmethod
    def _check_document(cls, d: Any) -> Mapping[str, Any]:
        if not isinstance(d, Mapping):
            raise InvalidInput(f"a {cls.TYPE or cls.__name__} object must be a JSON object, got {type(d).__name__}")
        if cls.TYPE and d.get("type", cls.TYPE) != cls.TYPE:
            raise InvalidInput(f"not a {cls.TYPE} object: type={d.get('type')!r}")
        model = d.get("model", "")
        if not isinstance(model, str):
            raise InvalidInput(f"{cls.TYPE}: model must be a string, got {type(model).__name__}")
        return d


# --------------------------------------------------------------------------- arrays side by side


class Columns(Result):
    """N items as arrays side by side; subclasses are ``@dataclass(frozen=True, eq=False)`` with a
    ``data: dict[str, np.ndarray]`` and a ``model: str`` field, and set ``TYPE``, ``ITEMS`` and ``FIELDS``."""

    ITEMS: ClassVar[str] = "items"
    model: str
    data: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        name = type(self).__name__
        values: dict[str, np.ndarray] = {}
        for f in self._stored():
            if None not in f.shape:
                values[f.name] = _coerce(getattr(self, f.name), f, -1, name)
        lengths = {k: len(v) for k, v in values.items()}
        first = next(iter(lengths), None)
        n = lengths[first] if first is not None else 0
        if any(length != n for length in lengths.values()):
            others = ", ".join(f"{k} has {v}" for k, v in lengths.items() if k != first)
            raise ValueError(f"{name}: {first} has {n} items but {others}")
        for f in self._stored():
            if None in f.shape:
                values[f.name] = _coerce(getattr(self, f.name), f, n, name)
        data: dict[str, np.ndarray] = {}
        for k, v in dict(self.data or {}).items():
            arr = _column(v)
            if arr.ndim == 0 or len(arr) != n:
                raise ValueError(f"{name}: data[{k!r}] has length {len(arr) if arr.ndim else 0}, expected {n}")
            data[str(k)] = arr
        for k, v in values.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "model", str(self.model or ""))

    @classmethod
    def _stored(cls) -> tuple[Field, ...]:
        return tuple(f for f in cls.FIELDS if not f.computed)

    # ------------------------------------------------------------------ construction and access

    @classmethod
    def empty(cls: type[C], model: str = "") -> C:
        arrays = {f.name: _zeros(f, 0) for f in cls._stored()}
        return cls(**arrays, model=model)  # type: ignore[call-arg]

    def __len__(self) -> int:
        f = self._stored()[0]
        return len(getattr(self, f.name))

    def __getitem__(self: C, index: Index) -> C:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        elif isinstance(index, (list, tuple)):
            index = np.asarray(index) if len(index) else np.zeros(0, np.int64)
        # the arrays are already coerced and indexing keeps their dtypes and per-item shapes: no new validation
        out = object.__new__(type(self))
        columns = {f.name for f in self._stored()}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in columns:
                value = value[index]
            elif f.name == "data":
                value = {k: v[index] for k, v in value.items()}
            object.__setattr__(out, f.name, value)
        return out

    def with_data(self: C, **data: Any) -> C:
        """A copy with these per-item ``data`` entries added or replaced."""
        return dataclasses.replace(self, data={**self.data, **data})

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Columns)
        return (self.model == other.model and list(self.data) == list(other.data)
                and all(_same(getattr(self, f.name), getattr(other, f.name)) for f in self._stored())
                and all(_same(v, other.data[k]) for k, v in self.data.items()))

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ JSON

    def _header(self) -> dict[str, Any]:
        """Top-level JSON keys between ``model`` and the item list (derived values, ignored by from_dict)."""
        return {}

    def _rows(self, skip: Sequence[str] = ()) -> list[dict[str, Any]]:
        n = len(self)
        columns: list[tuple[str, list[Any]]] = []
        for f in self.FIELDS:
            arr = getattr(self, f.name)
            if f.name in skip or (f.optional and 0 in arr.shape[1:]):
                continue
            columns.append((f.json_key, _encode_column(arr, f)))
        columns += [(k, [_json_value(x) for x in v]) for k, v in self.data.items()]
        return [{k: col[i] for k, col in columns} for i in range(n)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used everywhere (API, CLI, service)."""
        return self._document()

    def _document(self, skip: Sequence[str] = ()) -> dict[str, Any]:
        return {**self._head(), **self._header(), self.ITEMS: self._rows(skip)}

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        d = cls._check_document(d)
        model = d.get("model", "")
        rows = d.get(cls.ITEMS, [])
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise InvalidInput(f"{cls.TYPE}: {cls.ITEMS} must be a list of objects")
        if not rows:
            return cls.empty(model)
        n = len(rows)
        arrays: dict[str, Any] = {}
        try:
            for f in cls._stored():
                key = f.json_key
                if all(key in r for r in rows):
                    values = [r[key] for r in rows]
                    if f.dtype is not str and not f.shape:  # scalars: null is NaN
                        values = [math.nan if v is None else v for v in values]
                    arrays[f.name] = values if f.dtype is str else np.array(values, dtype=f.dtype)
                elif None in f.shape and not any(key in r for r in rows):
                    arrays[f.name] = _zeros(f, n)  # not computed
                else:
                    raise InvalidInput(f"{cls.TYPE}: every item needs {key!r}")
            core = {f.json_key for f in cls.FIELDS}
            extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in core]
            data = {k: _json_column([r.get(k) for r in rows]) for k in extra}
            return cls(**arrays, data=data, model=model)  # type: ignore[call-arg]
        except InvalidInput:
            raise
        except (ValueError, TypeError) as e:
            raise InvalidInput(f"malformed {cls.TYPE} object: {e}") from e


# --------------------------------------------------------------------------- per-image records


class Record(Result):
    """One record (per image, or a part of one when ``TYPE`` is empty); subclasses are
    ``@dataclass(frozen=True)`` and set ``FIELDS`` (and ``TYPE`` plus a ``model`` field for a result)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        for f in self.FIELDS:
            if not f.computed:
                object.__setattr__(self, f.name, _coerce_value(getattr(self, f.name), f, name))
        if self.TYPE:
            object.__setattr__(self, "model", str(getattr(self, "model", "") or ""))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used everywhere (API, CLI, service)."""
        out = self._head()
        for f in self.FIELDS:
            value = getattr(self, f.name)
            if not (f.optional and value is None):
                out[f.json_key] = _encode_value(value, f)
        return out

    @classmethod
    def from_dict(cls: type[R], d: Mapping[str, Any]) -> R:
        d = cls._check_document(d)
        model = d.get("model", "")
        kwargs: dict[str, Any] = {"model": model} if cls.TYPE else {}
        try:
            for f in cls.FIELDS:  # type: ignore[attr-defined]
                if f.computed:
                    continue
                if f.json_key not in d:
                    if f.optional:
                        kwargs[f.name] = None
                        continue
                    raise InvalidInput(f"{cls.TYPE or cls.__name__}: {f.json_key!r} is missing")
                kwargs[f.name] = _decode_value(d[f.json_key], f, model)
            return cls(**kwargs)
        except InvalidInput:
            raise
        except (ValueError, TypeError) as e:
            raise InvalidInput(f"malformed {cls.TYPE or cls.__name__} object: {e}") from e


# --------------------------------------------------------------------------- helpers


def _zeros(f: Field, n: int) -> Any:
    if f.dtype is str:
        return np.empty(n, dtype=object)
    return np.zeros((n, *(0 if s is None else s for s in f.shape)), dtype=f.dtype)


def _coerce(value: Any, f: Field, n: int, owner: str) -> np.ndarray:
    """``value`` as an array of ``n`` (-1: any number of) items of ``f``'s dtype and per-item shape."""
    if f.dtype is str:
        raw = [value] if isinstance(value, str) else list(np.asarray(value, dtype=object).reshape(-1))
        out = np.empty(len(raw), dtype=object)
        for i, v in enumerate(raw):
            out[i] = str(v)
        return out
    arr = np.asarray(value, dtype=f.dtype)
    if None in f.shape and arr.size == 0:
        fits = arr.ndim == 1 + len(f.shape) and len(arr) == n and all(
            s is None or s == a for s, a in zip(f.shape, arr.shape[1:], strict=True))
        return arr if fits else _zeros(f, n)  # e.g. (0, 5, 2) landmarks of no faces keep their 5
    try:
        return arr.reshape(n, *(-1 if s is None else s for s in f.shape))
    except ValueError:
        per_item = tuple("any" if s is None else s for s in f.shape)
        raise ValueError(f"{owner}: {f.name} has shape {arr.shape}, expected {n if n >= 0 else 'N'} items "
                         f"of shape {per_item}") from None


def _encode_column(arr: np.ndarray, f: Field) -> list[Any]:
    if f.dtype is str or arr.dtype.kind not in "fc":
        return arr.tolist()
    values = arr.tolist()
    if arr.ndim == 1:
        return [None if math.isnan(v) else _round(v, f.decimals) for v in values]
    return _round(values, f.decimals)


def _round(value: Any, decimals: int | None) -> Any:
    if isinstance(value, list):
        return [_round(v, decimals) for v in value]
    return value if decimals is None else round(value, decimals)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _json_value(value: Any) -> Any:
    """A JSON-ready value; NaN (e.g. the distance to an empty collection) becomes null."""
    value = _jsonable(value)
    return None if isinstance(value, float) and math.isnan(value) else value


def _object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array of ``values`` (lists stay lists instead of becoming a 2-D array)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _column(values: Any) -> np.ndarray:
    """A ``data`` entry as an array: arrays as they are; sequences holding lists, tuples or dicts as a
    1-D object array; other sequences through ``np.asarray``."""
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        return np.asarray(values)
    values = list(values)
    if any(isinstance(v, (list, tuple, dict, np.ndarray)) for v in values):
        return _object_array(values)
    return np.asarray(values)


def _json_column(values: list[Any]) -> np.ndarray:
    """A ``data`` entry read from JSON: numbers with nulls become floats with NaN (as written)."""
    numbers = [v for v in values if v is not None]
    if len(numbers) < len(values) and numbers and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return _column(values)


_SCALARS: dict[Any, Callable[[Any], Any]] = {int: int, float: float, str: str, bool: bool}


def _coerce_one(value: Any, f: Field, owner: str) -> Any:
    kind = f.dtype
    if kind in _SCALARS:
        if kind in (int, float) and isinstance(value, (str, bytes)):
            raise ValueError(f"{owner}: {f.name} must be a number, got {value!r}")
        out = _SCALARS[kind](value)
    elif isinstance(value, kind):
        out = value
    else:
        raise ValueError(f"{owner}: {f.name} must be a {kind.__name__}, got {type(value).__name__}")
    if f.choices and out not in f.choices:
        raise ValueError(f"{owner}: {f.name} must be one of {', '.join(map(str, f.choices))}; got {out!r}")
    return out


def _coerce_value(value: Any, f: Field, owner: str) -> Any:
    if value is None and f.optional:
        return None
    if f.mapping:
        if not isinstance(value, Mapping):
            raise ValueError(f"{owner}: {f.name} must be a mapping, got {type(value).__name__}")
        return {str(k): _coerce_one(v, f, owner) for k, v in value.items()}
    if f.many or f.shape:
        items = tuple(value)
        if f.shape and len(items) != f.shape[0]:
            raise ValueError(f"{owner}: {f.name} must have {f.shape[0]} values, got {len(items)}")
        return tuple(_coerce_one(v, f, owner) for v in items)
    return _coerce_one(value, f, owner)


def _encode_one(value: Any, f: Field) -> Any:
    if isinstance(value, Columns):
        return value._rows()
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, float):
        return None if math.isnan(value) else _round(value, f.decimals)
    return value


def _encode_value(value: Any, f: Field) -> Any:
    if f.mapping:
        return {k: _encode_one(value[k], f) for k in sorted(value)}
    if f.many or f.shape:
        return [_encode_one(v, f) for v in value]
    return _encode_one(value, f)


def _decode_one(value: Any, f: Field, model: str) -> Any:
    kind = f.dtype
    if isinstance(kind, type) and issubclass(kind, Columns):
        return kind.from_dict({kind.ITEMS: value, "model": model})
    if isinstance(kind, type) and issubclass(kind, Result):
        return kind.from_dict(value)  # type: ignore[attr-defined]
    return math.nan if value is None and kind is float else value


def _decode_value(value: Any, f: Field, model: str) -> Any:
    if f.mapping:
        if not isinstance(value, Mapping):
            raise InvalidInput(f"{f.json_key} must be an object")
        return {k: _decode_one(v, f, model) for k, v in value.items()}
    if f.many or f.shape:
        if not isinstance(value, list):
            raise InvalidInput(f"{f.json_key} must be a list")
        return tuple(_decode_one(v, f, model) for v in value)
    return _decode_one(value, f, model)
