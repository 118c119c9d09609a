"""anonymize_people(): whole people hidden with deeplabv3_voc's person class, every pixel outside the grown
person mask exactly unchanged; hide_mask / people_mask on their own."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import visor
from visor.errors import ConfigError
from visor.faces import FaceAnalyzer
from visor.faces.anonymize import anonymize_people, default_dilation, grow_mask, hide_mask, people_mask
from visor.io import load_image
from visor.types.segmentation import SegmentationMask

PHOTO = "000000000436.jpg"  # coco128: one person, 63% of the 427x640 frame in COCO's polygons

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")  # its numpy 2 copy= note


@pytest.fixture(scope="module")
def segmenter(zoo_cache):
    return visor.load("deeplabv3_voc")


@pytest.mark.parametrize("method", ["blur", "pixelate", "box"])
def test_only_the_grown_person_mask_changes(shared_data, segmenter, method):
    """On a coco128 photo with a person: every pixel outside the person mask grown by 6 px (1% of 640) is
    exactly the input's, every pixel inside is changed (box: black), and the grown mask covers 99.8% of
    COCO's person polygons (the mask alone: 99.0%)."""
    pytest.importorskip("pycocotools")
    from segmentation_helpers import coco_person_masks

    path = shared_data("coco128") / "images" / PHOTO
    original = load_image(path)
    seg = segmenter.predict(path)
    grown = people_mask(seg)
    assert default_dilation(427, 640) == 6
    assert np.array_equal(grown, grow_mask(seg.binary("person"), 6))
    assert np.array_equal(people_mask(seg, dilate=0), seg.binary("person"))
    out = np.asarray(anonymize_people(path, method, segmenter=segmenter))
    assert out.shape == original.shape
    assert np.array_equal(out[~grown], original[~grown])
    changed = np.any(out != original, axis=-1)
    assert changed[grown].mean() > 0.99
    if method == "box":
        assert not out[grown].any()
    else:
        assert np.abs(out.astype(int) - original)[grown].mean() > 15
    truth = coco_person_masks(shared_data("coco128"))[PHOTO]
    assert (grown & truth).sum() / truth.sum() > 0.995
    assert 0.985 < (seg.binary("person") & truth).sum() / truth.sum() < 0.995


def test_people_blurred_whole_leave_no_face_to_find(shared_data, segmenter, zoo_cache):
    """The 8 photos of faces/unknown (12 faces): after hiding the people, YuNet finds none, and nothing outside
    the grown person masks changed."""
    analyzer = FaceAnalyzer()
    found = 0
    for path in sorted((shared_data("faces") / "unknown").iterdir()):
        original = load_image(path)
        found += len(analyzer.detect(original, embeddings=False))
        out = anonymize_people(original, "blur", segmenter=segmenter)
        assert len(analyzer.detect(out, embeddings=False)) == 0, path.name
        grown = people_mask(segmenter.predict(original))
        assert np.array_equal(np.asarray(out)[~grown], original[~grown]), path.name
    assert found == 12


def test_hide_mask_by_hand():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    mask = np.zeros((50, 70), bool)
    mask[5:20, 5:15] = True  # two separate regions
    mask[30:48, 40:69] = True
    for method in ("blur", "pixelate", "box"):
        out = np.asarray(hide_mask(image, mask, method))
        assert np.array_equal(out[~mask], np.asarray(image)[~mask]), method
        assert np.any(out != np.asarray(image), axis=-1)[mask].mean() > 0.9, method
    assert not np.asarray(hide_mask(image, mask, "box"))[mask].any()
    assert np.array_equal(np.asarray(hide_mask(image, np.zeros((50, 70), bool))), np.asarray(image))
    with pytest.raises(ConfigError, match="the mask is 70x49, the image 70x50"):
        hide_mask(image, mask[:49])
    with pytest.raises(ConfigError, match="unknown anonymize method 'smudge'"):
        hide_mask(image, mask, "smudge")


def test_bad_arguments(segmenter):
    cars = SegmentationMask(np.ones((4, 4), np.uint8), ("background", "car"))
    with pytest.raises(ConfigError, match="has no 'person' class"):
        people_mask(cars)
    voc = SegmentationMask(np.zeros((4, 4), np.uint8), segmenter.labels)
    with pytest.raises(ConfigError, match="dilate must be 0 or more"):
        people_mask(voc, dilate=-1)
    assert not people_mask(voc).any()
    with pytest.raises(ConfigError, match="anonymize_people needs a segmentation model"):
        anonymize_people(np.zeros((8, 8, 3), np.uint8), segmenter="yolox_nano")
    with pytest.raises(ConfigError, match="unknown anonymize method"):
        anonymize_people(np.zeros((8, 8, 3), np.uint8), "smudge", segmenter=segmenter)
