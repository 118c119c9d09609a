"""YuNet in ONNX Runtime: every face of faces/unknown, parity with cv2.FaceDetectorYN, the callable package."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from visor.errors import ConfigError, CorruptImage
from visor.faces import FaceAnalyzer, YuNetDetector, detect_faces, load_face_detector
from visor.faces.yunet import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_SIDE, padded_size
from visor.io import bounded_copy
from visor.models.registry import builtin
from visor.types.faces import Faces

#: Faces per photo of faces/unknown (12 in all; test_collections names each of them).
COUNTS = {
    "alex_lacamoire1.jpg": 1,
    "johnsnow_test1.jpg": 1,
    "kit_with_rose.jpg": 2,
    "obama-240p.jpg": 1,
    "obama1.jpg": 1,
    "obama_and_biden.jpg": 3,
    "obama_partial_face.jpg": 1,
    "two_people.jpg": 2,
}


@pytest.fixture(scope="module")
def yunet(zoo_cache) -> YuNetDetector:
    return load_face_detector("yunet")


@pytest.fixture(scope="module")
def unknown(shared_data):
    return sorted((shared_data("faces") / "unknown").iterdir())


def test_acceptance_yunet_finds_all_12_faces(yunet, unknown):
    found = {p.name: yunet.predict(p) for p in unknown}
    assert {name: len(f) for name, f in found.items()} == COUNTS
    for name, faces in found.items():
        assert faces.model == "yunet" and faces.embeddings.shape == (len(faces), 0)
        assert faces.landmarks.shape == (len(faces), 5, 2)
        assert np.all(faces.confidence >= 0.9), name  # every face scores 0.91-0.96, nothing else above 0.53
        assert np.all(np.diff(faces.confidence) <= 0), name  # best first
        with Image.open(unknown[0].parent / name) as im:
            w, h = im.size
        assert np.all(faces.xyxy >= 0) and np.all(faces.xyxy[:, [0, 2]] <= w) and np.all(faces.xyxy[:, [1, 3]] <= h)
        # YuNet's order: the person's right eye (on the viewer's left), left eye, nose tip, right and left
        # mouth corner; eyes above the nose, the nose above the mouth
        m = faces.landmarks
        assert np.all(m[:, 0, 0] < m[:, 1, 0]) and np.all(m[:, 3, 0] < m[:, 4, 0]), name
        assert np.all(m[:, :2, 1].max(1) < m[:, 2, 1]) and np.all(m[:, 2, 1] < m[:, 3:, 1].min(1)), name


def test_exact_values_on_a_small_photo(yunet, unknown):
    """obama-240p.jpg (427x240) is analysed as it is (padded to 448x256)."""
    f = yunet.predict(unknown[0].parent / "obama-240p.jpg")
    np.testing.assert_allclose(f.confidence, [0.934], atol=1e-3)
    np.testing.assert_allclose(f.xyxy[0], [194.96, 18.00, 250.38, 93.24], atol=0.05)
    np.testing.assert_allclose(f.landmarks[0], [[209.49, 46.39], [235.63, 45.64], [222.25, 60.37], [211.40, 72.77],
                                                [234.30, 72.20]], atol=0.05)


def test_same_faces_as_cv2_face_detector_yn(yunet, unknown):
    """The decoding is OpenCV's: cv2.FaceDetectorYN on the same (analysed) pixels gives the same faces
    (OpenCV is a core dependency of visor, so this runs everywhere)."""
    import cv2
    onnx = os.fspath(yunet.session.path)
    for path in unknown:
        with Image.open(path) as im:
            seen = bounded_copy(im.convert("RGB"), max_side=DEFAULT_MAX_SIDE)
        ours = yunet.predict(seen)
        bgr = np.ascontiguousarray(np.asarray(seen)[:, :, ::-1])
        detector = cv2.FaceDetectorYN.create(onnx, "", seen.size, DEFAULT_CONF, DEFAULT_IOU, 5000)
        _, theirs = detector.detect(bgr)
        theirs = np.zeros((0, 15), np.float32) if theirs is None else theirs
        assert len(ours) == len(theirs) == COUNTS[path.name], path
        a, b = np.argsort(ours.xyxy[:, 0]), np.argsort(theirs[:, 0])
        boxes = np.concatenate([theirs[b, :2], theirs[b, :2] + theirs[b, 2:4]], axis=1)
        boxes = np.clip(boxes, 0, [*seen.size, *seen.size])  # visor clips boxes to the image; OpenCV does not
        np.testing.assert_allclose(ours.xyxy[a], boxes, atol=1e-2)
        np.testing.assert_allclose(ours.landmarks[a], theirs[b, 4:14].reshape(-1, 5, 2), atol=1e-2)
        np.testing.assert_allclose(ours.confidence[a], theirs[b, 14], atol=1e-4)


def test_large_photo_is_analysed_at_960_px_and_mapped_back(yunet, unknown):
    path = unknown[0].parent / "obama_and_biden.jpg"  # 2000x1428
    with Image.open(path) as im:
        full = im.convert("RGB")
    batch, frames = yunet.prepare([full])
    assert batch.shape == (1, 3, 704, 960) and batch.dtype == np.float32  # 960x685 padded to multiples of 32
    assert frames[0].geometry.width == 2000 and frames[0].input_size == (704, 960)
    # BGR 0-255, the padding zeros
    seen = np.asarray(bounded_copy(full, max_side=960))
    np.testing.assert_array_equal(batch[0, :, :685, :].transpose(1, 2, 0), seen[:, :, ::-1].astype(np.float32))
    assert not batch[0, :, 685:, :].any()
    # the same faces as YuNet on the downscaled copy, in the original's pixels
    small = yunet.predict(seen)
    big = yunet.predict(full)
    scale = np.array([2000 / 960, 1428 / 685] * 2, np.float32)
    np.testing.assert_allclose(big.xyxy, small.xyxy * scale, rtol=1e-4, atol=1e-2)
    assert padded_size(427, 240) == (448, 256) and padded_size(960, 640) == (960, 640)


def test_batches_pad_to_the_largest_image_and_give_the_same_faces(yunet, unknown):
    one = [yunet.predict(p) for p in unknown]
    together = yunet.predict(unknown, batch_size=4)
    assert [len(f) for f in together] == [len(f) for f in one]
    for a, b in zip(one, together, strict=True):
        # a face at the bottom-right edge of a smaller image sees more padding: it moves by 0.2 px (of 2000)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-3)


def test_options_errors_and_bad_images(yunet, unknown, tmp_path):
    two = unknown[0].parent / "two_people.jpg"
    assert len(yunet.predict(two, conf=0.99)) == 0
    assert len(yunet.predict(two, max_det=1)) == 1
    with pytest.raises(ConfigError, match="between 0 and 1"):
        yunet.predict(two, conf=1.5)
    with pytest.raises(ConfigError, match="no option 'threshold'"):
        yunet.predict(two, threshold=0.5)
    with pytest.raises(ConfigError, match="yolox_nano is a detection model"):
        YuNetDetector.from_card(builtin().get("yolox_nano"))
    with pytest.raises(ConfigError, match="yolox_nano is a detection model"):
        load_face_detector("yolox_nano")
    blank = Image.new("RGB", (300, 200), (128, 128, 128))
    assert len(yunet.predict(blank)) == 0
    outcomes = list(yunet.predict_iter([two, b"\xff\xd8\xff not a jpeg", blank]))
    assert [len(o.result) if o.error is None else type(o.error) for o in outcomes] == [2, CorruptImage, 0]


def test_analyzer_uses_yunet_by_default_and_keeps_dlib_selectable(zoo_cache, unknown):
    analyzer = FaceAnalyzer(max_pixels=500_000)
    path = unknown[0].parent / "obama_and_biden.jpg"
    f = analyzer.detect(path, embeddings=False)
    assert f.model == "yunet" and len(f) == 3 and f.embeddings.shape == (3, 0)
    assert f.xyxy[:, 2].max() > 1500  # in the original's pixels, though detected on a 0.5 MP copy
    marks68 = analyzer.detect(path, landmarks=68, embeddings=False)
    assert marks68.landmarks.shape == (3, 68, 2)
    hog = FaceAnalyzer(detector="hog").detect(unknown[0].parent / "two_people.jpg", embeddings=False)
    assert hog.model == "hog" and len(hog) == 2
    assert FaceAnalyzer(detector=analyzer.yunet).yunet is analyzer.yunet


def test_detect_faces_is_the_callable_package(zoo_cache, unknown):
    path = unknown[0].parent / "kit_with_rose.jpg"
    f = detect_faces(path)
    assert isinstance(f, Faces) and len(f) == 2 and f.model == "yunet" and f.embeddings.shape == (2, 0)
    both = detect_faces([path, Image.open(path)], embeddings=True)
    assert [len(x) for x in both] == [2, 2] and both[0].embeddings.shape == (2, 128)
    np.testing.assert_allclose(both[0].xyxy, f.xyxy, atol=1e-3)
    assert len(detect_faces(path, model="hog")) == 2
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "PNG")
    assert len(detect_faces(buf.getvalue())) == 0


def test_visor_faces_is_callable_in_a_fresh_process(zoo_cache, unknown):
    code = (
        "import sys, json, visor.faces\n"
        "from visor import faces\n"
        "import visor.faces.collections\n"
        "f = visor.faces(sys.argv[1])\n"
        "assert faces is visor.faces and visor.faces.FaceStore is visor.faces.collections.FaceStore\n"
        "assert not {'dlib', 'sqlalchemy'} & set(sys.modules)\n"
        "print(json.dumps({'model': f.model, 'n': len(f), 'kind': type(visor.faces).__name__}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, os.fspath(unknown[0].parent / "two_people.jpg")],
                         check=True, capture_output=True, text=True, env=os.environ.copy())
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"model": "yunet", "n": 2, "kind": "_FacesPackage"}
