"""Semantic segmentation datasets: images with per-pixel class masks.

A :class:`SegmentationDataset` lists image / mask pairs; it decodes nothing until :meth:`~SegmentationDataset.load`
(or :meth:`~SegmentationDataset.load_all`) is called. Masks are index images (8-bit ``L`` or palette ``P`` PNGs,
also 16-bit): the value of a pixel is its class id, read as it is stored (a palette PNG is never turned into colours).

Layouts :meth:`SegmentationDataset.from_folder` recognises (file stems pair an image with its mask):

* ``root/images/`` + ``root/masks/`` (or ``labels/``, ``annotations/``; ``image/`` + ``label/`` / ``mask/`` too),
  optionally with split folders inside both: ``images/train/`` + ``masks/train/``;
* CamVid / SegNet: ``root/train/`` + ``root/trainannot/``, ``val/`` + ``valannot/``, ``test/`` + ``testannot/``;
* one pair of folders per split: ``root/<split>/image/`` + ``root/<split>/label/`` (ISBI membrane), with the same
  folder names as the first layout.

Classes come from the ``classes`` argument, else ``classes.txt`` (one name a line) or ``classes.json`` (a list of
names, or ``{"id": name}``) in the root; else masks holding only 0 and 255 are binary (255 becomes class 1 of
``("background", "foreground")``), and any other masks get ``class_0`` .. ``class_N`` from the largest value seen.

Pixels equal to :attr:`SegmentationDataset.ignore_index` (255 unless given; CamVid uses 11 for void) are ignored by
training and metrics: :meth:`~SegmentationDataset.load` returns them as 255 whatever the value on disk.

Nothing here stops at a bad item: an image without a mask, a mask without an image, are recorded in
:attr:`~SegmentationDataset.problems` while listing; an unreadable image, a mask of another size than its image or
mask values outside the classes raise :class:`~visor.errors.InvalidInput` from ``load`` and become one
:class:`~visor.data.detection.Problem` each in ``load_all``.

COCO instance annotations become semantic masks with :meth:`SegmentationDataset.from_coco`: class 0 is
background, COCO's categories are classes 1..K in category id order, crowd regions are ignored (255), and where objects
overlap the smaller one wins (objects are painted largest first; crowd regions before any object).
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from visor.data.dataset import SPLIT_NAMES, check_split_name
from visor.data.detection import DetectionImage
from visor.data.detection import Problem as _Problem
from visor.errors import ConfigError, InvalidInput, VisorError
from visor.io.image import DEFAULT_LIMITS, IMAGE_EXTENSIONS, ImageLimits, open_image

if TYPE_CHECKING:
    from visor.data.detection import DetectionDataset

__all__ = [
    "CAMVID_CLASSES",
    "IGNORE",
    "IGNORE_CATEGORY",
    "MASK_FOLDERS",
    "MaskSample",
    "Problem",
    "SegmentationDataset",
    "is_mask_data",
    "read_mask",
]

#: The 11 CamVid classes of the SegNet split, in id order (id 11 is void, the ignore index).
CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)

#: The value :meth:`SegmentationDataset.load` gives ignored pixels.
IGNORE = 255

#: The COCO category that holds ignored pixels (crowd annotations), as ``masks_to_coco`` writes it:
#: :meth:`SegmentationDataset.from_coco` reads its regions as ignored, not as a class.
IGNORE_CATEGORY = "ignore"

#: Folder names holding the images and the masks of a pair of folders (the first that exists wins).
IMAGE_FOLDERS: tuple[str, ...] = ("images", "image", "img", "imgs")
MASK_FOLDERS: tuple[str, ...] = ("masks", "mask", "labels", "label", "annotations", "annots", "gt")

#: Mask file formats: lossless index images only (a JPEG mask would smear the class ids).
MASK_EXTENSIONS: frozenset[str] = frozenset({".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
_MASK_OPENERS = ("PNG", "BMP", "TIFF", "GIF", "WEBP")
_BINARY_CLASSES = ("background", "foreground")
_LAYOUTS_HELP = (
    "expected images/ + masks/ (or labels/, annotations/), optionally with train/ val/ test/ inside both; "
    "CamVid's train/ + trainannot/ (val/ + valannot/, test/ + testannot/); or <split>/image/ + <split>/label/"
)


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class Problem(_Problem):
    """:class:`visor.data.detection.Problem` (``item``: the file, ``reason``) with the file as a path too."""

    @property
    def path(self) -> Path:
        """The file the problem is about (``item`` as a path)."""
        return Path(self.item)


@dataclass(frozen=True)
class MaskSample:
    """One image and its mask file."""

    image: Path
    mask: Path | None
    """The mask file; ``None`` when the image has none (a problem: such a sample cannot be loaded). For a dataset
    read from COCO, the annotation file (the mask is rasterised from :attr:`coco`)."""
    split: str | None
    """``"train"``, ``"val"``, ``"test"`` or ``None``."""
    stem: str
    coco: DetectionImage | None = field(default=None, compare=False, repr=False)
    """COCO datasets only: the image's annotations, rasterised by :meth:`SegmentationDataset.load`."""


@dataclass(frozen=True)
class SegmentationDataset:
    """Image / mask pairs and the class names (a class id is its index in ``classes``)."""

    root: Path | None
    classes: tuple[str, ...]
    samples: tuple[MaskSample, ...]
    ignore_index: int = IGNORE
    """The mask value of ignored pixels on disk (returned as 255 by :meth:`load`)."""
    problems: tuple[Problem, ...] = ()
    """Per-item problems found while listing: images without a mask, masks without an image, ..."""
    binary: bool = False
    """Masks store 0 / 255: 255 is read as class 1."""
    problem_splits: tuple[str | None, ...] = field(default=(), compare=False, repr=False)
    """The split of each problem (``None`` when it has none), so that :meth:`subset` keeps its own."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "samples", tuple(self.samples))
        object.__setattr__(self, "problems", tuple(self.problems))
        if self.root is not None and not isinstance(self.root, Path):
            object.__setattr__(self, "root", Path(self.root))
        if not self.classes:
            raise ConfigError("a segmentation dataset needs at least one class")
        for c in self.classes:
            if not isinstance(c, str) or not c:
                raise ConfigError(f"class names must be non-empty strings, got {c!r}")
        repeated = [c for c, n in Counter(self.classes).items() if n > 1]
        if repeated:
            raise ConfigError(f"class names must be unique; repeated: {', '.join(map(repr, repeated))}")
        if len(self.classes) > IGNORE:
            raise ConfigError(f"at most {IGNORE} classes fit 8-bit masks (255 is the ignore value); "
                              f"got {len(self.classes)}")
        if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, (int, np.integer)):
            raise ConfigError(f"ignore_index must be an integer, got {self.ignore_index!r}")
        object.__setattr__(self, "ignore_index", int(self.ignore_index))
        if 0 <= self.ignore_index < len(self.classes):
            raise ConfigError(
                f"ignore_index {self.ignore_index} is the id of class {self.classes[self.ignore_index]!r}; "
                f"the ignore index must be outside 0..{len(self.classes) - 1}"
            )
        if not self.problem_splits:
            object.__setattr__(self, "problem_splits", (None,) * len(self.problems))
        elif len(self.problem_splits) != len(self.problems):
            raise ConfigError("problem_splits must give one split per problem")

    # ------------------------------------------------------------------ views

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[MaskSample]:
        return iter(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names the samples use, in the order train, val, test."""
        present = {s.split for s in self.samples}
        return tuple(name for name in SPLIT_NAMES if name in present)

    def subset(self, split: str) -> SegmentationDataset:
        """The samples of one split (possibly none) and that split's problems; the classes stay."""
        check_split_name(split)
        keep = [i for i, s in enumerate(self.problem_splits) if s == split]
        return replace(
            self,
            samples=tuple(s for s in self.samples if s.split == split),
            problems=tuple(self.problems[i] for i in keep),
            problem_splits=tuple(self.problem_splits[i] for i in keep),
        )

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_folder(
        cls,
        root: str | os.PathLike,
        *,
        classes: Sequence[str] | str | os.PathLike | None = None,
        ignore_index: int | None = None,
        binary: bool | None = None,
    ) -> SegmentationDataset:
        """List the image / mask pairs under ``root`` (see the module's layouts).

        ``classes``: the class names in id order, or a ``classes.txt`` / ``classes.json`` file; default: the
        root's own ``classes.txt`` / ``classes.json``, else found from the masks. ``ignore_index``: the mask value
        of ignored pixels (default 255). ``binary``: masks store 0 / 255 for two classes (default: detected when
        every mask holds only 0 and 255 and neither ``ignore_index`` 255 nor more than two classes are given).

        Raises :class:`~visor.errors.InvalidInput` when ``root`` has none of the layouts; missing and orphan masks
        are recorded in :attr:`problems`.
        """
        root = Path(root)
        if not root.is_dir():
            raise InvalidInput(f"no such folder: {root}" if not root.exists() else f"not a folder: {root}")
        groups = find_pairs(root)
        if groups is None:
            raise InvalidInput(f"{root} is not a mask dataset: {_LAYOUTS_HELP}")
        samples: list[MaskSample] = []
        problems: list[tuple[Problem, str | None]] = []
        for split, image_dir, mask_dir in groups:
            found, found_problems = _pair_folder(image_dir, mask_dir, split)
            samples.extend(found)
            problems.extend((p, split) for p in found_problems)
        names = _read_classes(classes if classes is not None else _classes_file(root))
        ignore = IGNORE if ignore_index is None else ignore_index
        if binary is None:
            may_be_binary = (names is None or len(names) == 2) and ignore_index != IGNORE
            binary = may_be_binary and _all_binary(samples)
        if names is None:
            if binary:
                names = _BINARY_CLASSES
            else:
                top = _largest_value(samples, ignore)
                names = tuple(f"class_{i}" for i in range(top + 1))
        elif binary and len(names) != 2:
            raise ConfigError(f"binary masks have two classes; {len(names)} class names were given")
        return cls(
            root=root,
            classes=tuple(names),
            samples=tuple(samples),
            ignore_index=ignore,
            problems=tuple(p for p, _ in problems),
            binary=bool(binary),
            problem_splits=tuple(s for _, s in problems),
        )

    @classmethod
    def from_coco(
        cls,
        json_path: str | os.PathLike,
        images_dir: str | os.PathLike | None = None,
        *,
        split: str | None = None,
    ) -> SegmentationDataset:
        """COCO instance annotations as semantic masks, rasterised when an item is loaded.

        Classes: ``"background"`` (0), then COCO's categories in category id order (1..K). Polygons and RLE masks are
        painted largest object first, so where objects overlap the smaller one wins; crowd regions are painted
        first, as ignored pixels (255), so that an object labelled inside a crowd keeps its class. Annotations with
        a box only are recorded as problems and left out of the mask. ``images_dir`` and ``split`` are as for
        :func:`visor.data.formats.from_coco`.
        """
        from visor.data.formats import from_coco

        ds = from_coco(json_path, images_dir, split=split)
        return cls.from_detection(ds, source=Path(json_path))

    @classmethod
    def from_detection(cls, ds: DetectionDataset, *, source: Path | None = None) -> SegmentationDataset:
        """A :class:`~visor.data.detection.DetectionDataset` with polygons / RLE masks as semantic masks (see
        :meth:`from_coco`)."""
        if "background" in ds.classes:
            raise InvalidInput("the detection classes already hold 'background', which is class 0 of the masks")
        problems = [Problem(p.item, p.reason) for p in ds.problems]
        splits: list[str | None] = [None] * len(problems)
        names = [c for c in ds.classes if c != IGNORE_CATEGORY]
        remap = None
        if IGNORE_CATEGORY in ds.classes:  # regions of the 'ignore' category are ignored, as crowd regions are
            dropped = ds.classes.index(IGNORE_CATEGORY)
            remap = {c: (c if c < dropped else c - 1) for c in range(len(ds.classes)) if c != dropped}
        samples = []
        for im in ds.images:
            if remap is not None:
                im = replace(im, annotations=tuple(
                    replace(a, iscrowd=True, class_id=0) if a.class_id not in remap
                    else replace(a, class_id=remap[a.class_id]) for a in im.annotations))
            for a in im.annotations:
                if not a.segmentation and a.rle is None:
                    what = f"annotation id {a.id}" if a.id is not None else "an annotation"
                    problems.append(Problem(str(im.path), f"{what} has a box only (no polygon or RLE); "
                                                          "left out of the mask"))
                    splits.append(im.split)
            samples.append(MaskSample(im.path, source, im.split, im.path.stem, coco=im))
        return cls(
            root=ds.root,
            classes=("background", *names),
            samples=tuple(samples),
            ignore_index=IGNORE,
            problems=tuple(problems),
            problem_splits=tuple(splits),
        )

    # ------------------------------------------------------------------ loading

    def read_mask(self, i: int, *, size: tuple[int, int] | None = None) -> np.ndarray:
        """The mask of sample ``i`` as a (H, W) uint8 array with class ids and 255 for ignored pixels.

        ``size`` (width, height): the image's size, checked against the mask's. Raises InvalidInput for a
        missing mask, a mask that cannot be read, of another size, or with values outside the classes.
        """
        sample = self.samples[i]
        if sample.coco is not None:
            mask = rasterise(sample.coco, len(self.classes))
        elif sample.mask is None:
            raise InvalidInput(f"{sample.image}: {_no_mask(sample.stem)}")
        else:
            raw = read_mask(sample.mask)
            mask = self._to_classes(raw, sample.mask)
        if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
            where = sample.mask if sample.coco is None else f"{sample.image} (COCO width/height)"
            raise InvalidInput(
                f"{where}: the mask is {mask.shape[1]}x{mask.shape[0]} but its image {sample.image.name} is "
                f"{size[0]}x{size[1]}"
            )
        return mask

    def _to_classes(self, raw: np.ndarray, path: Path) -> np.ndarray:
        n = len(self.classes)
        if self.binary:
            bad = (raw != 0) & (raw != 255)
            if bad.any():
                values = _value_list(raw[bad])
                raise InvalidInput(f"{path}: a binary mask holds values other than 0 and 255: {values}")
            return (raw == 255).astype(np.uint8)
        valid = (raw < n) | (raw == self.ignore_index)
        if not valid.all():
            raise InvalidInput(
                f"{path}: mask values {_value_list(raw[~valid])} are outside the {n} classes "
                f"(0..{n - 1}) and not the ignore index {self.ignore_index}"
            )
        if self.ignore_index != IGNORE:
            out = raw.astype(np.uint8, copy=True)
            out[raw == self.ignore_index] = IGNORE
            return out
        return raw.astype(np.uint8, copy=False)

    def load(self, i: int, *, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``i`` as a (H, W, 3) uint8 RGB image and its (H, W) uint8 mask (class ids, 255 = ignored).

        ``max_side``: scale both down together so that the long side is at most this (the image by area
        averaging, the mask by nearest neighbour); never up. Raises :class:`~visor.errors.InvalidInput` (with the
        reason) for an unreadable image, a missing mask, a mask of another size than its image and mask values
        outside the classes.
        """
        sample = self.samples[i]
        if sample.mask is None:
            raise InvalidInput(f"{sample.image}: {_no_mask(sample.stem)}")
        try:
            data = _read_file(sample.image, DEFAULT_LIMITS, "image")
            full = _image_size(data)
            target = _scaled_size(full, max_side)
            # the JPEG decoder may shrink by 1/2, 1/4, 1/8 while decoding, never below the target
            image = open_image(data, draft_size=target if target != full else None)
        except VisorError as e:
            raise InvalidInput(f"{sample.image}: unreadable image: {_reason(e, sample.image)}") from None
        if full != image.size and target == full:  # a header PIL could not size but open_image decoded
            full = image.size
            target = _scaled_size(full, max_side)
        mask = self.read_mask(i, size=full)
        if image.size != target:
            image = image.resize(target, Image.Resampling.BOX if target[0] < image.size[0] else
                                 Image.Resampling.BILINEAR)
        if target != full:
            mask = np.asarray(Image.fromarray(mask, "L").resize(target, Image.Resampling.NEAREST))
        return np.asarray(image), np.ascontiguousarray(mask)

    def load_all(
        self, *, max_side: int | None = None, progress: bool = False
    ) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], list[Problem]]:
        """Every loadable sample as ``(index, image, mask)``, and one :class:`Problem` (path and reason) for each
        sample that could not be loaded. Never raises for an item.

        A sample without a mask gives the same Problem as in :attr:`problems` (``dict.fromkeys`` of both lists
        names it once); masks without an image are only in :attr:`problems`."""
        from tqdm.auto import tqdm

        items: list[tuple[int, np.ndarray, np.ndarray]] = []
        problems: list[Problem] = []
        for i in tqdm(range(len(self.samples)), unit="img", desc="loading", disable=not progress, leave=False):
            try:
                image, mask = self.load(i, max_side=max_side)
            except VisorError as e:
                problems.append(problem_for(self.samples[i], e))
                continue
            items.append((i, image, mask))
        return items, problems


# --------------------------------------------------------------------------- masks


def read_mask(path: str | os.PathLike, *, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """The index values of a mask file as stored (2-D uint8 or uint16 array), within visor's byte and pixel caps.

    Palette (``P``) and grayscale (``L``, ``I;16``) images give their values; an RGB image gives its values only
    when its three channels are equal (a grey mask saved as RGB), else InvalidInput: a colour-coded mask needs
    converting to an index PNG first.
    """
    path = Path(path)
    data = _read_file(path, limits)
    try:
        img = Image.open(io.BytesIO(data), formats=_MASK_OPENERS)
    except UnidentifiedImageError:
        raise InvalidInput(f"{path}: not a mask image (index PNG, BMP, TIFF, GIF or WebP)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidInput(f"{path}: cannot read the mask: {e}") from None
    if img.width * img.height > limits.max_pixels:
        raise InvalidInput(f"{path}: mask is {img.width}x{img.height} pixels; the limit is {limits.max_pixels}")
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InvalidInput(f"{path}: cannot decode the mask: {e}") from None
    mode = img.mode
    if mode in ("P", "L", "1"):
        return np.asarray(img, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise InvalidInput(f"{path}: mask values must lie in 0..65535")
        return arr.astype(np.uint16)
    if mode in ("RGB", "RGBA", "LA", "PA"):
        arr = np.asarray(img)
        if mode in ("LA", "PA"):
            return arr[..., 0].astype(np.uint8)
        if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            return np.ascontiguousarray(arr[..., 0])
        raise InvalidInput(f"{path}: a colour ({mode}) mask; masks must be index images (mode L or P) whose values "
                           "are class ids")
    raise InvalidInput(f"{path}: unsupported mask mode {mode}")


def rasterise(im: DetectionImage, num_classes: int) -> np.ndarray:
    """The semantic mask (H, W) uint8 of one COCO image: 0 background, class ``k`` as ``k + 1``, crowd 255."""
    from visor.ops.rle import decode, from_polygons

    h, w = im.height, im.width
    if h * w > DEFAULT_LIMITS.max_pixels:
        raise InvalidInput(f"{im.path}: the COCO image is {w}x{h} pixels; the limit is {DEFAULT_LIMITS.max_pixels}")
    out = np.zeros((h, w), dtype=np.uint8)
    crowd, objects = [], []
    for order, a in enumerate(im.annotations):
        if a.class_id + 1 >= num_classes:
            raise InvalidInput(f"{im.path}: class id {a.class_id} is outside the dataset's classes")
        what = f"annotation id {a.id}" if a.id is not None else f"annotation {order}"
        try:
            if a.rle is not None:
                if tuple(a.rle.size) != (h, w):
                    raise InvalidInput(f"its RLE mask is {a.rle.size[1]}x{a.rle.size[0]} but the image is {w}x{h}")
                m = decode(a.rle.to_dict())
            elif a.segmentation:
                m = from_polygons(a.segmentation, h, w)
            else:
                continue
        except InvalidInput as e:
            raise InvalidInput(f"{im.path}: {what}: {e}") from None
        (crowd if a.iscrowd else objects).append((int(m.sum()), order, m, a.class_id))
    for _, _, m, _ in crowd:
        out[m] = IGNORE
    for _, _, m, class_id in sorted(objects, key=lambda t: (-t[0], t[1])):
        out[m] = class_id + 1
    return out


# --------------------------------------------------------------------------- layouts


def _has_files(folder: Path, extensions: frozenset[str]) -> bool:
    try:
        return any(e.is_file() and Path(e.name).suffix.lower() in extensions for e in os.scandir(folder))
    except OSError:
        return False


def _holds_masks(folder: Path) -> bool:
    """Mask files directly in ``folder`` or in its split folders (a COCO ``annotations/`` folder holds none)."""
    return _has_files(folder, MASK_EXTENSIONS) or any(
        _has_files(folder / s, MASK_EXTENSIONS) for s in SPLIT_NAMES if (folder / s).is_dir())


def _pair_in(folder: Path) -> tuple[Path, Path] | None:
    """The (images, masks) folders directly inside ``folder``, if it has both."""
    images = next((folder / n for n in IMAGE_FOLDERS if (folder / n).is_dir()), None)
    masks = next((folder / n for n in MASK_FOLDERS if (folder / n).is_dir() and _holds_masks(folder / n)), None)
    return (images, masks) if images is not None and masks is not None else None


def find_pairs(root: Path) -> list[tuple[str | None, Path, Path]] | None:
    """``(split, image folder, mask folder)`` for each group of ``root`` in a known layout, else ``None``."""
    pair = _pair_in(root)
    if pair is not None:
        images, masks = pair
        split_dirs = [s for s in SPLIT_NAMES if (images / s).is_dir()]
        if split_dirs and not _has_files(images, IMAGE_EXTENSIONS):
            return [(s, images / s, masks / s) for s in split_dirs]
        return [(None, images, masks)]
    groups: list[tuple[str | None, Path, Path]] = []
    for s in SPLIT_NAMES:
        if (root / s).is_dir() and (root / f"{s}annot").is_dir():
            groups.append((s, root / s, root / f"{s}annot"))
        elif (root / s).is_dir() and (inner := _pair_in(root / s)) is not None:
            groups.append((s, *inner))
    return groups or None


def is_mask_data(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder in one of :meth:`SegmentationDataset.from_folder`'s layouts."""
    path = Path(path)
    return path.is_dir() and find_pairs(path) is not None


def _files(folder: Path, extensions: frozenset[str]) -> list[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise InvalidInput(f"cannot list {folder}: {e.strerror or e}") from None
    return [Path(e.path) for e in entries
            if not e.name.startswith(".") and Path(e.name).suffix.lower() in extensions and e.is_file()]


def _pair_folder(image_dir: Path, mask_dir: Path, split: str | None) -> tuple[list[MaskSample], list[Problem]]:
    problems: list[Problem] = []
    masks: dict[str, Path] = {}
    for m in _files(mask_dir, MASK_EXTENSIONS):
        if m.stem in masks:
            problems.append(Problem(str(m), f"a second mask for {m.stem!r} (besides {masks[m.stem].name}); ignored"))
            continue
        masks[m.stem] = m
    samples: list[MaskSample] = []
    seen: dict[str, Path] = {}
    for im in _files(image_dir, IMAGE_EXTENSIONS):
        if im.stem in seen:
            problems.append(Problem(str(im), f"a second image named {im.stem!r} (besides {seen[im.stem].name}) "
                                             "would share its mask; ignored"))
            continue
        seen[im.stem] = im
        mask = masks.get(im.stem)
        if mask is None:
            problems.append(Problem(str(im), _no_mask(im.stem)))
        samples.append(MaskSample(im, mask, split, im.stem))
    for stem, m in masks.items():
        if stem not in seen:
            problems.append(Problem(str(m), f"a mask without an image: no image named {stem}.* in {image_dir}"))
    return samples, problems


def _classes_file(root: Path) -> Path | None:
    for name in ("classes.txt", "classes.json"):
        if (root / name).is_file():
            return root / name
    return None


def _read_classes(classes: Sequence[str] | str | os.PathLike | None) -> tuple[str, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        path = Path(classes)
        if not path.is_file():
            raise ConfigError(f"no such classes file: {path}")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from None
        if path.suffix.lower() == ".json":
            return _classes_from_json(text, path)
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    names = tuple(classes)
    if not all(isinstance(n, str) for n in names):
        raise ConfigError("class names must be strings")
    return names


def _classes_from_json(text: str, path: Path) -> tuple[str, ...]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e.msg} (line {e.lineno})") from None
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        return tuple(data)
    if isinstance(data, dict):
        try:
            ids = {int(k): v for k, v in data.items()}
        except ValueError:
            raise ConfigError(f"{path}: keys must be class ids (0, 1, ...)") from None
        if sorted(ids) != list(range(len(ids))) or not all(isinstance(v, str) for v in ids.values()):
            raise ConfigError(f"{path}: expected class ids 0..N-1 mapped to names")
        return tuple(ids[i] for i in range(len(ids)))
    raise ConfigError(f"{path}: expected a list of class names or an object mapping ids to names")


def _all_binary(samples: Sequence[MaskSample]) -> bool:
    """Every readable mask holds only 0 and 255, and 255 appears in at least one."""
    seen_255 = False
    any_mask = False
    for s in samples:
        if s.mask is None:
            continue
        try:
            values = np.unique(read_mask(s.mask))
        except VisorError:
            continue
        any_mask = True
        if not np.isin(values, (0, 255)).all():
            return False
        seen_255 = seen_255 or bool((values == 255).any())
    return any_mask and seen_255


def _largest_value(samples: Sequence[MaskSample], ignore: int) -> int:
    top = 0
    for s in samples:
        if s.mask is None:
            continue
        try:
            values = np.unique(read_mask(s.mask))
        except VisorError:
            continue
        values = values[values != ignore]
        if values.size:
            top = max(top, int(values[-1]))
    if top >= IGNORE:
        raise ConfigError(f"mask values go up to {top}; give the classes (and the ignore index) explicitly")
    return top


# --------------------------------------------------------------------------- helpers


def _read_file(path: Path, limits: ImageLimits, what: str = "mask") -> bytes:
    try:
        st = path.stat()
    except OSError:
        raise InvalidInput(f"{path}: no such {what} file") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"{path}: not a regular file")
    if st.st_size > limits.max_bytes:
        raise InvalidInput(f"{path}: {what} file is {st.st_size} bytes; the limit is {limits.max_bytes}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise InvalidInput(f"{path}: not a regular file")
            data = f.read(limits.max_bytes + 1)
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    if len(data) > limits.max_bytes:
        raise InvalidInput(f"{path}: {what} file exceeds the limit of {limits.max_bytes} bytes")
    if not data:
        raise InvalidInput(f"{path}: the {what} file is empty")
    return data


def _image_size(data: bytes) -> tuple[int, int]:
    """The displayed (EXIF-rotated) size of an image from its header, without decoding; (0, 0) if PIL cannot tell
    (``open_image`` then raises the typed error)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            try:
                orientation = img.getexif().get(0x0112, 1)
            except Exception:  # noqa: BLE001 - damaged EXIF: open_image ignores it too
                orientation = 1
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return (0, 0)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _scaled_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    w, h = size
    if max_side is None or max(w, h) <= max_side:
        return size
    if max_side < 1:
        raise ConfigError(f"max_side must be positive, got {max_side}")
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _value_list(values: np.ndarray, limit: int = 10) -> str:
    unique = np.unique(values)
    shown = ", ".join(str(int(v)) for v in unique[:limit])
    return shown + (f" (and {unique.size - limit} more)" if unique.size > limit else "")


def _no_mask(stem: str) -> str:
    return f"no mask: no file named {stem}.* in the mask folder"


def _reason(e: Exception, path: Path) -> str:
    text = str(e)
    return text[len(f"{path}: "):] if text.startswith(f"{path}: ") else text


def problem_for(sample: MaskSample, e: Exception) -> Problem:
    """The :class:`Problem` for a sample that failed to load: the file the error names (image or mask) and why."""
    text = str(e)
    for prefix in (f"{sample.image}: ", f"{sample.mask}: "):
        if text.startswith(prefix):
            item = prefix[:-2]
            return Problem(item, text[len(prefix):])
    return Problem(str(sample.image), text)

