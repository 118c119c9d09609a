"""Generic labels: the WordNet table shipped with visor, the ImageNet roll-up (summed probabilities), the
detector's classes (best detection), max of the two, threshold and order; real images with exact values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from visor.features import labels as L
from visor.types import Classifications
from visor.types.detections import Detections

REPO = Path(__file__).resolve().parents[2]
BUS = REPO / "assets" / "bus.jpg"
WORDNET = Path("/usr/share/wordnet")


def test_table_provenance_and_curation() -> None:
    raw = json.loads((REPO / "src" / "visor" / "models" / "labels" / "imagenet_hypernyms.json").read_text())
    assert "WordNet 3.0" in raw["source"] and "wordnet-base" in raw["source"]
    assert "Princeton" in raw["license"] and raw["notice"].startswith("WordNet 3.0 Copyright 2006 by Princeton")
    table = L.hypernym_table()
    assert len(table.names) == 72 and len(set(table.names)) == 72
    assert table.imagenet.shape == (72, 1000) and table.coco.shape == (72, 80)
    assert not {"Entity", "Physical entity", "Object", "Whole", "Artifact", "Organism", "Living thing",
                "Instrumentality", "Container"} & set(table.names)
    assert {"Dog", "Cat", "Bird", "Vehicle", "Car", "Food", "Plant", "Animal", "Mammal", "Furniture", "Clothing",
            "Building", "Person"} <= set(table.names)
    assert int(table.imagenet[table.index("Dog")].sum()) == 118  # ImageNet-1k's 118 dog breeds
    assert int(table.imagenet[table.index("Animal")].sum()) == 398
    assert not table.imagenet.flags.writeable


def test_imagenette_wnids_agree_with_the_table(shared_data) -> None:
    """The 10 Imagenette classes: the packaged wnid list puts each synset at its ImageNet-1k index."""
    classes = json.loads((shared_data("imagenette-dev") / "classes.json").read_text())
    table = L.hypernym_table()
    for wnid, info in classes.items():
        assert table.imagenet_wnids[info["imagenet_index"]] == wnid
    assert L.hypernyms(classes["n02102040"]["imagenet_index"]) == ["Dog", "Mammal", "Animal"]  # English springer
    assert L.hypernyms(classes["n03417042"]["imagenet_index"]) == ["Truck", "Motor vehicle", "Vehicle"]
    assert L.hypernyms(classes["n03028079"]["imagenet_index"]) == ["Building"]  # church
    assert L.hypernyms(classes["n03394916"]["imagenet_index"]) == ["Musical instrument"]  # French horn


@pytest.mark.parametrize(("name", "expected"), [
    ("English Springer Spaniel", ["Dog", "Mammal", "Animal"]),
    ("school bus", ["Bus", "Motor vehicle", "Vehicle"]),  # WordNet's bus is "public transport": linked by hand
    ("bridegroom", ["Person"]),
    ("gazelle", ["Mammal", "Animal"]),
    ("tabby cat", ["Cat", "Mammal", "Animal"]),
    ("lion", ["Big cat", "Mammal", "Animal"]),
    ("pizza", ["Dish", "Food"]),
    ("sneaker", ["Footwear", "Clothing"]),
    ("analog clock", ["Timepiece"]),
    ("parking meter", []),  # a "timer" to WordNet: left out of Timepiece
    ("website", []),
])
def test_hypernyms(name: str, expected: list[str]) -> None:
    assert L.hypernyms(name) == expected


def test_table_rebuilds_from_wordnet_identically() -> None:
    """tools/build_hypernyms.py --check: the shipped table is what WordNet 3.0 (Debian's wordnet-base) gives."""
    if not (WORDNET / "data.noun").is_file():
        if os.environ.get("CI") == "true":  # .ci/run installs it
            pytest.fail("WordNet 3.0 is missing in CI (apt-get install wordnet-base)")
        pytest.skip("WordNet 3.0 is not installed (apt-get install wordnet-base)")
    out = subprocess.run([sys.executable, str(REPO / "tools" / "build_hypernyms.py"), "--wordnet", str(WORDNET),
                          "--check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "up to date"


@pytest.mark.parametrize(("name", "shown"), [
    ("person", "Person"), ("traffic light", "Traffic light"), ("cell phone", "Mobile phone"),
    ("sports ball", "Ball"), ("tv", "Television"), ("potted plant", "Houseplant"), ("Bus", "Bus"),
])
def test_display_name(name: str, shown: str) -> None:
    assert L.display_name(name) == shown


def test_label_wnid() -> None:
    assert L.label_wnid("Dog") == "n02084071"
    assert L.label_wnid("Person") == "n00007846"
    assert L.label_wnid("Traffic light") == "n06874185"  # a COCO class, by its display name
    assert L.label_wnid("Mobile phone") == "n02992529"
    assert L.label_wnid("school bus") == ""
    assert L.imagenet_wnid(779, "school bus") == "n04146614"
    assert L.imagenet_wnid(779, "bus") == ""  # not that class's name: another classifier


def probs(**by_name: float) -> np.ndarray:
    table = L.hypernym_table()
    p = np.zeros(1000, np.float32)
    for name, value in by_name.items():
        p[table.imagenet_names.index(name.replace("_", " "))] = value
    return p


def test_imagenet_scores_sum_the_classes_under_each_label() -> None:
    p = probs(English_Springer_Spaniel=0.5, Beagle=0.25, tabby_cat=0.125, pizza=0.0625)
    scores = L.imagenet_scores(p)
    assert scores == pytest.approx({"Dog": 0.75, "Cat": 0.125, "Mammal": 0.875, "Animal": 0.875,
                                    "Dish": 0.0625, "Food": 0.0625}, abs=1e-7)


def test_imagenet_scores_are_capped_at_one() -> None:
    table = L.hypernym_table()
    p = table.imagenet[table.index("Animal")] / 397.0  # a little over 1 in all
    assert L.imagenet_scores(p)["Animal"] == 1.0


def test_imagenet_scores_from_a_classification_result() -> None:
    table = L.hypernym_table()
    ids = [table.imagenet_names.index(n) for n in ("Beagle", "Basset Hound", "tabby cat")]
    result = Classifications(ids, [0.5, 0.25, 0.125], [table.imagenet_names[i] for i in ids], "efficientnet_lite0")
    assert L.imagenet_scores(result) == pytest.approx({"Dog": 0.75, "Cat": 0.125, "Mammal": 0.875,
                                                       "Animal": 0.875})
    assert L.imagenet_scores(result.to_dict()) == L.imagenet_scores(result)
    other = Classifications([0, 1], [0.9, 0.1], ["defect", "ok"], "my-model")  # not ImageNet: nothing rolls up
    assert L.imagenet_scores(other) == {}
    assert L.imagenet_scores(np.ones(10) / 10) == {}


def detections(*rows: tuple[str, float]) -> Detections:
    coco = L.hypernym_table().coco_names
    return Detections(np.zeros((len(rows), 4)), [s for _, s in rows], [coco.index(n) for n, _ in rows],
                      {"class_name": np.array([n for n, _ in rows])})


def test_detector_scores_best_detection_per_label() -> None:
    d = detections(("person", 0.9), ("person", 0.6), ("dog", 0.7), ("car", 0.4), ("cell phone", 0.3))
    expected = {"Person": 0.9, "Dog": 0.7, "Mammal": 0.7, "Animal": 0.7, "Car": 0.4, "Motor vehicle": 0.4,
                "Vehicle": 0.4, "Mobile phone": 0.3, "Telephone": 0.3}
    assert L.detector_scores(d) == pytest.approx(expected, abs=1e-6)
    # without class names, from the detector's labels
    bare = Detections(d.xyxy, d.confidence, d.class_id)
    assert L.detector_scores(bare, labels=L.hypernym_table().coco_names) == pytest.approx(expected, abs=1e-6)
    assert L.detector_scores(d.to_dict()) == pytest.approx(expected, abs=1e-6)
    # another detector's class: its name only
    custom = Detections(np.zeros((1, 4)), [0.8], [0], {"class_name": np.array(["solder joint"])})
    assert L.detector_scores(custom) == pytest.approx({"Solder joint": 0.8})


def test_generic_labels_max_threshold_and_order() -> None:
    p = probs(English_Springer_Spaniel=0.55, tabby_cat=0.3, minibus=0.1)
    d = detections(("cat", 0.62), ("bus", 0.5), ("person", 0.45))
    got = L.generic_labels(p, d)
    assert [g.name for g in got] == ["Mammal", "Animal", "Cat", "Dog", "Bus", "Motor vehicle", "Vehicle"]
    assert [round(g.score, 6) for g in got] == [0.85, 0.85, 0.62, 0.55, 0.5, 0.5, 0.5]
    name, score = got[0]  # a (name, score) pair
    assert (name, round(score, 6)) == ("Mammal", 0.85)
    assert got[0].to_dict() == {"name": "Mammal", "score": 0.85, "wnid": "n01861778"}
    assert [g.name for g in L.generic_labels(p, d, threshold=0.6, max_results=3)] == ["Mammal", "Animal", "Cat"]
    assert [g.name for g in L.generic_labels(p)] == ["Mammal", "Animal", "Dog"]
    assert [g.name for g in L.generic_labels(None, d)] == ["Cat", "Mammal", "Animal", "Bus", "Motor vehicle",
                                                           "Vehicle"]
    assert L.generic_labels() == []


def test_bus_photo(classifier, yolox_nano) -> None:
    result = classifier.classify(BUS, top_k=1000)
    found = yolox_nano.detect(BUS)
    got = [(g.name, round(g.score, 3)) for g in L.generic_labels(result, found)]
    assert got == [("Vehicle", 0.988), ("Motor vehicle", 0.984), ("Bus", 0.983)]
    assert {n for n, _ in L.generic_labels(None, found, threshold=0.9)} == {"Bus", "Motor vehicle", "Vehicle"}


def test_giraffe_photo_gets_giraffe_from_the_detector(classifier, yolox_nano, shared_data) -> None:
    """ImageNet-1k has no giraffe (its best guess is "gazelle", 0.12): the detector names it."""
    image = shared_data("coco128") / "images" / "000000000025.jpg"
    result = classifier.classify(image, top_k=1000)
    assert (str(result.label[0]), round(float(result.confidence[0]), 2)) == ("gazelle", 0.12)
    assert [(g.name, round(g.score, 3)) for g in L.generic_labels(result)] == [("Animal", 0.681),
                                                                               ("Mammal", 0.569)]
    got = [(g.name, round(g.score, 3)) for g in L.generic_labels(result, yolox_nano.detect(image))]
    assert got == [("Giraffe", 0.875), ("Mammal", 0.875), ("Animal", 0.875)]
