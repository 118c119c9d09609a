"""The top-level verbs, one per task and all alike: same image sources, model= as a name, folder or
loaded predictor, one image -> one result, a list -> a list."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visor
from visor.errors import ConfigError, ImageNotFound
from visor.models import Detector
from visor.models.registry import DEFAULT_DETECTOR

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "bus.jpg"


@pytest.fixture(scope="module")
def zoo_detector(yolox_nano) -> Detector:
    """yolox_nano, imported from ../shared/models into the session cache by conftest (nothing downloaded)."""
    return yolox_nano


def sources_of_every_kind(path: Path) -> list:
    data = path.read_bytes()
    return [path, str(path), data, io.BytesIO(data), np.asarray(Image.open(path).convert("RGB")),
            Image.open(path)]


def test_classify_one_image_a_list_and_every_source_kind(classifier):
    top = visor.classify(SAMPLE)
    assert top.top[0] == "school bus" and top.model == "efficientnet_lite0"
    assert len(top.label) == 5
    results = visor.classify([SAMPLE, SAMPLE], top_k=2, model=classifier)
    assert isinstance(results, list) and [r.label.tolist()[0] for r in results] == ["school bus"] * 2
    expected = visor.classify(SAMPLE, top_k=3, model=classifier).to_dict()
    for source in sources_of_every_kind(SAMPLE)[:4]:  # encoded sources decode identically
        assert visor.classify(source, top_k=3, model=classifier).to_dict() == expected


def test_detect_finds_the_bus_with_the_default_detector(zoo_detector):
    found = visor.detect(SAMPLE)
    assert found.model == DEFAULT_DETECTOR
    names = found.data["class_name"].tolist()
    bus = names.index("bus")
    assert found.confidence[bus] > 0.5
    # the school bus spans x 118..575, y 108..322 of the 640x427 photo (read off the image)
    x0, y0, x1, y1 = found.xyxy[bus].tolist()
    assert 100 < x0 < 130 and 100 < y0 < 125 and 565 < x1 < 590 and 305 < y1 < 330
    assert set(names) <= {"bus", "person", "car", "stop sign", "traffic light"}  # nothing absurd
    # model= as a loaded detector gives the same; every source kind too; a list gives a list
    assert visor.detect(SAMPLE, model=zoo_detector).to_dict() == found.to_dict()
    for source in sources_of_every_kind(SAMPLE):
        assert visor.detect(source, model=zoo_detector).to_dict() == found.to_dict()
    both = visor.detect([SAMPLE, SAMPLE], model=zoo_detector, conf=0.5)
    assert len(both) == 2 and both[0].to_dict() == both[1].to_dict()
    assert both[0].confidence.min() > 0.5


def test_segment_gives_a_mask_at_the_image_size_from_every_source_kind(zoo_cache):
    """visor.segment runs deeplabv3_voc (the default segmenter): the school bus covers 70,728 of the photo's
    640x427 pixels; every source kind gives the same mask, a list a list, a detector is refused."""
    from visor.models.segmenter import Segmenter

    mask = visor.segment(SAMPLE)
    assert mask.model == "deeplabv3_voc" and (mask.width, mask.height) == (640, 427)
    assert set(mask.areas) == {"background", "bus"} and abs(mask.areas["bus"] - 70728) <= 20
    segmenter = visor.load("deeplabv3_voc")
    assert isinstance(segmenter, Segmenter)
    for source in sources_of_every_kind(SAMPLE):
        assert np.array_equal(visor.segment(source, model=segmenter).mask, mask.mask)
    with_conf = visor.segment([SAMPLE, SAMPLE], model=segmenter, with_confidence=True)
    assert len(with_conf) == 2 and np.array_equal(with_conf[1].mask, mask.mask)
    assert with_conf[0].confidence.shape == (427, 640) and 0.45 < with_conf[0].confidence.min() <= 1
    with pytest.raises(ConfigError, match="yolox_nano is a detection model; segment needs a segmentation model"):
        visor.segment(SAMPLE, model=DEFAULT_DETECTOR)


def test_a_model_of_another_task_is_refused(classifier, zoo_detector):
    with pytest.raises(ConfigError, match="efficientnet_lite0 is a classification model; detect needs a detection"):
        visor.detect(SAMPLE, model=classifier)
    with pytest.raises(ConfigError, match="yolox_nano is a detection model; classify needs a classification"):
        visor.classify(SAMPLE, model=zoo_detector)
    with pytest.raises(ConfigError, match="yolox_nano is a detection model; classify needs"):
        visor.classify(SAMPLE, model=DEFAULT_DETECTOR)


def test_bad_images_raise_their_typed_errors(classifier, tmp_path):
    with pytest.raises(ImageNotFound):
        visor.classify(tmp_path / "missing.jpg", model=classifier)
    with pytest.raises(ImageNotFound):
        visor.properties([SAMPLE, tmp_path / "missing.jpg"])


def test_properties_matches_the_feature_and_follows_one_in_one_out():
    from visor.features.properties import image_properties

    one = visor.properties(SAMPLE)
    assert (one.width, one.height) == (640, 427)
    assert one.to_dict() == image_properties(SAMPLE).to_dict()
    many = visor.properties([SAMPLE, SAMPLE.read_bytes()], colors=3)
    assert [len(p.dominant_colors) for p in many] == [3, 3]
    assert many[0].to_dict() == many[1].to_dict()


def test_read_text_reads_a_receipt(shared_data):
    receipt = shared_data("sroie-dev") / "img" / "100.jpg"
    first_line = (shared_data("sroie-dev") / "box" / "100.csv").read_text().splitlines()[0].split(",", 8)[8]
    from visor.features.text import TextReader

    reader = TextReader()
    lines = visor.read_text(receipt, model=reader)
    assert first_line.strip() in lines.text.tolist()
    assert lines.to_dict() == reader.read(receipt).to_dict()
    many = visor.read_text([receipt, receipt], model=reader)
    assert isinstance(many, list) and [m.text.tolist() for m in many] == [lines.text.tolist()] * 2


def test_moderate_runs_the_moderation_feature():
    from visor.features.moderation import Moderator

    moderator = Moderator()
    verdict = visor.moderate(SAMPLE, model=moderator)
    assert verdict.to_dict() == moderator.moderate(SAMPLE).to_dict() == visor.moderate(SAMPLE).to_dict()
    assert verdict.adult in ("VERY_UNLIKELY", "UNLIKELY")
    assert [v.adult for v in visor.moderate([SAMPLE], model=moderator)] == [verdict.adult]


def test_predict_is_the_generic_verb(classifier):
    assert visor.predict("classification", SAMPLE, model=classifier, top_k=1).top[0] == "school bus"
    with pytest.raises(ConfigError, match="Did you mean 'classification'"):
        visor.predict("clasification", SAMPLE)
    with pytest.raises(ConfigError, match="Did you mean 'top_k'"):
        visor.predict("classification", SAMPLE, model=classifier, topk=1)


def test_import_visor_stays_light():
    """The top-level package exports the verbs and imports neither the service nor PyTorch."""
    code = ("import sys, visor; "
            "assert all(callable(getattr(visor, v)) for v in "
            "('classify', 'detect', 'segment', 'read_text', 'moderate', 'properties', 'load', 'embed')); "
            "heavy = [m for m in ('torch', 'visor.serve', 'fastapi', 'rapidocr_onnxruntime', 'nudenet', 'dlib', "
            "'onnxruntime') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
