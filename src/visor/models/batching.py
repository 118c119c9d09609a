"""What every visor model shares around inference: per-input outcomes, batch detection,
and decoding the next batch in a background thread while the current one is inferred."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from visor.errors import ConfigError, VisorError
from visor.io import ImageSource, describe_source


@dataclass(frozen=True)
class Outcome:
    """One input's result (``Classifications``, ``Detections``...), or the typed error that stopped it."""

    source: ImageSource
    result: Any = None
    error: VisorError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """``{"image": ..., "<result type>": result.to_dict()}`` or ``{"image": ..., "error": {...}}``."""
        d: dict[str, Any] = {"image": describe_source(self.source)}
        if self.error is not None:
            d["error"] = self.error.to_dict()
        else:
            assert self.result is not None
            body = self.result.to_dict()
            d[body["type"]] = body
        return d


def is_batch(images: Any) -> bool:
    """True for a list/tuple/iterator of images or a 4-D array; False for one image."""
    if isinstance(images, np.ndarray):
        return images.ndim == 4
    if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike, Image.Image)):
        return False
    if hasattr(images, "read"):
        return False
    return isinstance(images, Iterable)


def check_batch_size(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    return int(batch_size)


def _decode_many(decode: Callable[[ImageSource], Image.Image],
                 sources: Sequence[ImageSource]) -> list[Image.Image | VisorError]:
    out: list[Image.Image | VisorError] = []
    for s in sources:
        try:
            out.append(decode(s))
        except VisorError as e:
            out.append(e)
    return out


def _decode_and_prepare(
    decode: Callable[[ImageSource], Image.Image],
    prepare: Callable[[list[Image.Image]], Any] | None,
    sources: Sequence[ImageSource],
) -> tuple[list[Image.Image | VisorError], Any]:
    decoded = _decode_many(decode, sources)
    good = [d for d in decoded if isinstance(d, Image.Image)]
    return decoded, (prepare(good) if prepare is not None and good else None)


def prepared_batches(
    decode: Callable[[ImageSource], Image.Image],
    prepare: Callable[[list[Image.Image]], Any] | None,
    sources: Iterable[ImageSource],
    batch_size: int,
) -> Iterator[tuple[list[ImageSource], list[Image.Image | VisorError], Any]]:
    """(sources, decoded images or typed errors, ``prepare`` of the decoded images or None) per batch;
    the next batch is decoded (and prepared) in a thread meanwhile."""
    size = check_batch_size(batch_size)
    sources = list(sources)
    chunks = [sources[i : i + size] for i in range(0, len(sources), size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_decode_and_prepare, decode, prepare, chunks[0]) if chunks else None
        for i, chunk in enumerate(chunks):
            decoded, prepared = pending.result()
            pending = pool.submit(_decode_and_prepare, decode, prepare, chunks[i + 1]) if i + 1 < len(chunks) else None
            yield chunk, decoded, prepared


def decoded_batches(
    decode: Callable[[ImageSource], Image.Image], sources: Iterable[ImageSource], batch_size: int
) -> Iterator[tuple[list[ImageSource], list[Image.Image | VisorError]]]:
    """(sources, decoded images or typed errors) per batch; the next batch decodes in a thread meanwhile."""
    for chunk, decoded, _ in prepared_batches(decode, None, sources, batch_size):
        yield chunk, decoded


def split_decoded(items: Sequence[Any], decoded: Sequence[Image.Image | VisorError]
                  ) -> tuple[list[tuple[Any, Image.Image]], list[tuple[Any, VisorError]]]:
    """Pair each item of a batch with its decoded image or its error: (decoded pairs, failed pairs), in order."""
    good, bad = [], []
    for item, d in zip(items, decoded, strict=True):
        (bad if isinstance(d, VisorError) else good).append((item, d))
    return good, bad


def describe_error(error: VisorError) -> str:
    """``"TypeName: message"``, as evaluation reports list a skipped file."""
    return f"{type(error).__name__}: {error}"


def outcomes(
    decode: Callable[[ImageSource], Image.Image],
    run: Callable[[Any], list[Any]],
    sources: Iterable[ImageSource],
    batch_size: int,
    *,
    prepare: Callable[[list[Image.Image]], Any] | None = None,
) -> Iterator[Outcome]:
    """One :class:`Outcome` per source, in order: ``run`` sees only the images that decoded.

    Without ``prepare``, ``run`` gets the decoded images. With it, the background thread also runs
    ``prepare`` on them (resize, normalise: CPU work that would otherwise sit between two inferences)
    and ``run`` gets what it returned.
    """
    for chunk, decoded, prepared in prepared_batches(decode, prepare, sources, batch_size):
        good = [d for d in decoded if isinstance(d, Image.Image)]
        results = iter(run(good if prepare is None else prepared)) if good else iter(())
        for src, d in zip(chunk, decoded, strict=True):
            yield Outcome(src, error=d) if isinstance(d, VisorError) else Outcome(src, result=next(results))
