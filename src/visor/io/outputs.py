"""Output folders that never clobber inputs: the one check behind every command that writes copies.

``visor anonymize --out``, ``visor detect --save-annotated`` and ``visor review export`` all go
through here:

- :func:`check_output_folder` refuses an output folder that is, contains or is inside one of
  the inputs, or visor's data folder (the service and face databases);
- :func:`plan_outputs` maps each input image to its own output path: its path below the
  inputs' common folder, with its own extension (so ``a.jpg`` and ``a.png`` stay two files),
  never two inputs to one path, and no existing file replaced unless ``overwrite``;
- :func:`save_image` writes an image atomically in the format its extension names.

Every refusal is an :class:`~visor.errors.OutputConflict` (HTTP 400; exit status 2 in the CLI).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from visor.errors import OutputConflict, VisorError
from visor.io.files import PUBLIC, atomic_path

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["OutputWriteError", "check_output_folder", "plan_outputs", "save_image"]

#: PIL format and save options by extension (lossless where the format allows).
_FORMATS: dict[str, tuple[str, dict]] = {
    ".jpg": ("JPEG", {"quality": 95}),
    ".jpeg": ("JPEG", {"quality": 95}),
    ".jpe": ("JPEG", {"quality": 95}),
    ".png": ("PNG", {}),
    ".webp": ("WEBP", {"lossless": True}),
    ".bmp": ("BMP", {}),
    ".gif": ("GIF", {}),
    ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}),
}


class OutputWriteError(VisorError):
    """An output file could not be written (disk full, no permission...)."""

    code = "write_failed"


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(
    out: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    protected: Mapping[str | os.PathLike, str] | None = None,
    what: str = "output folder",
) -> Path:
    """``out``, resolved, after checking that writing (or replacing) it cannot touch an input.

    Raises :class:`OutputConflict` when ``out`` is a file, or is, contains or is inside one of
    ``inputs`` (files or folders) or ``protected`` (paths with what they are, e.g.
    ``{data_home(): "visor's data folder"}``, whose databases an overwrite would delete).
    Symbolic links are followed, so a link to an input folder is that folder.
    """
    folder = _resolved(out)
    if folder.exists() and not folder.is_dir():
        raise OutputConflict(f"{what} {out} exists and is not a folder")
    named = [(p, "the input") for p in inputs] + list((protected or {}).items())
    for given, name in named:
        path = _resolved(given)
        if folder == path:
            relation = "is"
        elif _within(path, folder):
            relation = "contains"
        elif _within(folder, path):
            relation = "is inside"
        else:
            continue
        raise OutputConflict(f"{what} {out} {relation} {name} {given}; choose a folder outside it")
    return folder


def plan_outputs(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                 overwrite: bool = False) -> list[Path]:
    """One output path in ``out_dir`` per input path, in order.

    Each keeps its path below the inputs' common folder and its extension; when two inputs
    would still land on one path (the same name twice, or names that differ only in case), the
    later ones get ``_2``, ``_3``... before the extension. Unless ``overwrite``, raises
    :class:`OutputConflict` when any of those files exists, before anything is written.
    """
    out = Path(out_dir)
    resolved = [_resolved(p) for p in paths]
    if not resolved:
        return []
    root = Path(os.path.commonpath([p.parent for p in resolved]))
    taken: set[str] = set()
    targets = []
    for path in resolved:
        rel = path.relative_to(root)
        target, n = out / rel, 1
        while os.path.normcase(str(target)).casefold() in taken:
            n += 1
            target = out / rel.with_name(f"{rel.stem}_{n}{rel.suffix}")
        taken.add(os.path.normcase(str(target)).casefold())
        targets.append(target)
    if not overwrite:
        existing = [t for t in targets if t.exists() or t.is_symlink()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise OutputConflict(f"{existing[0]} already exists{more}; choose an empty folder or pass --overwrite")
    return targets


def save_image(image: Image.Image, target: str | os.PathLike) -> Path:
    """Write ``image`` to ``target`` atomically (``PUBLIC``), in the format its extension names.

    JPEG at quality 95, WebP lossless; a format without alpha gets RGB. Raises
    :class:`OutputWriteError` naming the file when it cannot be written.
    """
    target = Path(target)
    fmt, options = _FORMATS.get(target.suffix.lower(), ("PNG", {}))
    if fmt in ("JPEG", "BMP") and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    try:
        with atomic_path(target, permissions=PUBLIC) as tmp:
            image.save(tmp, fmt, **options)
    except OSError as e:
        raise OutputWriteError(f"cannot write {target}: {e.strerror or e}") from None
    return target
