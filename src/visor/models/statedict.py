"""Read PyTorch state dicts into numpy arrays without PyTorch.

A ``.pth`` / ``.pt`` file is a pickle whose tensors point, through "persistent ids", at raw
storage bytes kept beside the pickle. Two layouts exist:

* the zip archive (``torch.save`` since 1.6): ``<prefix>/data.pkl``, the storages as
  ``<prefix>/data/<key>`` and an optional ``<prefix>/byteorder``;
* the legacy stream (before 1.6): pickles of a magic number, the protocol version and system
  information, then the object pickle, then the list of storage keys, then each storage as
  an int64 element count followed by its bytes, in that order.

The unpickler here is restricted: it resolves only ``collections.OrderedDict``, the tensor
rebuild functions (``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter``) and the typed
storage classes (``torch.FloatStorage`` ...), each mapped to a local stand-in; any other
global, such as a pickled module or ``os.system``, raises :class:`~visor.errors.WeightsError`
without being imported or called. Tensors come back as contiguous numpy arrays.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from visor.errors import WeightsError

#: torch's legacy-format magic number and protocol version (torch/serialization.py).
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

#: storage class name -> numpy dtype ("bfloat16" is read as its uint16 bits, then widened).
_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "UntypedStorage": "u1",
}
#: Largest pickle read (the object pickle of a state dict is a few hundred kB).
_MAX_PICKLE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        code = _STORAGE_DTYPES[self.name]
        return np.dtype("<u2") if code == "bfloat16" else np.dtype(code)


@dataclass
class _Storage:
    kind: _StorageType
    key: str
    numel: int
    data: np.ndarray | None = None  # filled when the bytes are read


@dataclass(frozen=True)
class _View:
    """A storage that is a slice of another (legacy format only)."""

    root: _Storage
    offset: int
    numel: int


@dataclass(frozen=True)
class _LazyTensor:
    storage: _Storage | _View
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None) -> _LazyTensor:
    if not isinstance(storage, _Storage | _View):
        raise WeightsError("a tensor in the state dict does not point at a storage")
    return _LazyTensor(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None) -> _LazyTensor:
    if not isinstance(data, _LazyTensor):
        raise WeightsError("a parameter in the state dict does not hold a tensor")
    return data


def _fresh(fn: Callable[..., Any]) -> Callable[[], Callable[..., Any]]:
    # A new function object per lookup: pickle's BUILD opcode may set attributes on what find_class
    # returned, and that must not reach a module-level function shared by later loads.
    return lambda: lambda *args: fn(*args)


#: (module, name) -> a factory of the stand-in find_class returns (a new object each time).
_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,  # a built-in type: immutable
    ("torch._utils", "_rebuild_tensor_v2"): _fresh(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _fresh(_rebuild_parameter),
    **{("torch", name): (lambda name=name: _StorageType(name)) for name in _STORAGE_DTYPES},
    # some torch versions name the module that defines the storage class
    **{("torch.storage", name): (lambda name=name: _StorageType(name)) for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals in ``allowed``; persistent ids go to ``load_storage``."""

    def __init__(self, file: IO[bytes], allowed: dict[tuple[str, str], Callable[[], Any]],
                 load_storage: Callable[[tuple], Any] | None) -> None:
        super().__init__(file)
        self._allowed = allowed
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            make = self._allowed[(module, name)]
        except KeyError:
            raise WeightsError(f"the weights file refers to {module}.{name}, which a state dict never needs; "
                               "refusing to load it") from None
        return make()

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise WeightsError("unexpected storage reference in the weights file header")
        return self._load_storage(pid)


def _storage_record(pid: Any) -> tuple[_StorageType, str, int, tuple | None]:
    """Check a persistent id ``('storage', type, key, location, numel[, view])``."""
    if not isinstance(pid, tuple) or len(pid) not in (5, 6):
        raise WeightsError(f"unsupported record in the weights file: {type(pid).__name__}")
    tag = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if tag != "storage":
        raise WeightsError(f"the weights file holds a pickled {tag!r}, not a state dict")
    kind, key, numel = pid[1], pid[2], pid[4]
    view = pid[5] if len(pid) == 6 else None
    if not isinstance(kind, _StorageType) or not isinstance(numel, int) or numel < 0:
        raise WeightsError("malformed storage record in the weights file")
    key = key.decode("ascii") if isinstance(key, bytes) else str(key)
    return kind, key, numel, view


def _materialize(obj: Any) -> Any:
    """Replace every :class:`_LazyTensor` in ``obj`` (dicts, lists, tuples) by a numpy array."""
    if isinstance(obj, _LazyTensor):
        return _to_array(obj)
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _to_array(t: _LazyTensor) -> np.ndarray:
    storage, base = t.storage, 0
    if isinstance(storage, _View):
        storage, base = storage.root, storage.offset
    if storage.data is None:
        raise WeightsError(f"storage {storage.key} is missing from the weights file")
    flat = storage.data
    n = int(np.prod(t.size)) if t.size else 1
    if n:
        last = base + t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride, strict=True))
        if base + t.offset < 0 or last >= flat.size or min(t.stride, default=0) < 0:
            raise WeightsError("a tensor reaches past its storage in the weights file")
    start = flat[base + t.offset:] if n else flat[:0]
    arr = np.lib.stride_tricks.as_strided(
        start, shape=t.size, strides=[s * flat.itemsize for s in t.stride], writeable=False
    ) if n else np.zeros(t.size, dtype=flat.dtype)
    arr = np.array(arr, order="C")  # a copy; ascontiguousarray would turn 0-d into 1-d
    if storage.kind.name == "BFloat16Storage":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def _bytes_to_array(raw: bytes, kind: _StorageType, numel: int, big_endian: bool = False) -> np.ndarray:
    dtype = kind.dtype.newbyteorder(">") if big_endian and kind.dtype.itemsize > 1 else kind.dtype
    if len(raw) != numel * dtype.itemsize:
        raise WeightsError(f"storage holds {len(raw)} bytes, expected {numel * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype).astype(kind.dtype.newbyteorder("<"), copy=False)


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise WeightsError(f"{path} is a zip archive without one data.pkl (not a torch.save file)")
        prefix = pkl[0][: -len("data.pkl")]
        big = prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() == b"big"
        if zf.getinfo(pkl[0]).file_size > _MAX_PICKLE_BYTES:
            raise WeightsError(f"{path}: the object pickle is too large for a state dict")
        storages: dict[str, _Storage] = {}

        def load_storage(pid: Any) -> _Storage:
            kind, key, numel, _ = _storage_record(pid)
            if key not in storages:
                name = f"{prefix}data/{key}"
                if name not in names:
                    raise WeightsError(f"{path} lacks the storage {key}")
                if zf.getinfo(name).file_size != numel * kind.dtype.itemsize:
                    raise WeightsError(f"{path}: storage {key} has the wrong size")
                storages[key] = _Storage(kind, key, numel, _bytes_to_array(zf.read(name), kind, numel, big))
            return storages[key]

        with zf.open(pkl[0]) as f:
            return _materialize(_Unpickler(f, _GLOBALS, load_storage).load())


def _read_legacy(path: Path) -> Any:
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = _Unpickler(f, {}, None)
        if header.load() != _LEGACY_MAGIC:
            raise WeightsError(f"{path} is not a PyTorch weights file (no zip archive, wrong magic number)")
        if header.load() != _LEGACY_PROTOCOL:
            raise WeightsError(f"{path}: unsupported PyTorch serialization protocol")
        info = header.load()
        if not isinstance(info, dict) or not info.get("little_endian", True):
            raise WeightsError(f"{path}: only little-endian PyTorch files are supported")
        storages: dict[str, _Storage] = {}
        views: dict[str, _View] = {}

        def load_storage(pid: Any) -> _Storage | _View:
            kind, key, numel, view = _storage_record(pid)
            root = storages.setdefault(key, _Storage(kind, key, numel))
            if view is None:
                return root
            view_key, offset, view_numel = view
            return views.setdefault(str(view_key), _View(root, int(offset), int(view_numel)))

        obj = _Unpickler(f, _GLOBALS, load_storage).load()
        keys = _Unpickler(f, {}, None).load()
        if not isinstance(keys, list):
            raise WeightsError(f"{path}: malformed storage list")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise WeightsError(f"{path}: storage {key} is not used by any tensor")
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * storage.kind.dtype.itemsize
            if numel != storage.numel or nbytes > size - f.tell():
                raise WeightsError(f"{path}: storage {key} has the wrong size (truncated file?)")
            storage.data = _bytes_to_array(f.read(nbytes), storage.kind, numel)
    return _materialize(obj)


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save``-d state dict (zip or legacy format) as numpy arrays.

    A checkpoint that wraps its weights as ``{"state_dict": {...}}`` is unwrapped. Raises
    :class:`~visor.errors.WeightsError` for anything else: other pickled objects, unknown
    globals, truncated or inconsistent files.
    """
    path = Path(path)
    try:
        state = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means unusable weights
        raise WeightsError(f"cannot read weights {path}: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return {str(k): v for k, v in state.items()}


def read_state_dict(path: str | os.PathLike, fmt: str) -> dict[str, np.ndarray]:
    """Weights as numpy arrays, without PyTorch: ``fmt`` is ``"torch"`` or ``"safetensors"``."""
    if fmt == "safetensors":
        from safetensors.numpy import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001
            raise WeightsError(f"cannot read weights {path}: {e}") from None
    if fmt != "torch":
        raise WeightsError(f"cannot read weights of format {fmt!r} as a state dict")
    return read_torch_state_dict(path)
