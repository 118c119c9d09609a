import json

import pytest

import visor
from visor.errors import ConfigError, ModelNotFound
from visor.models import Registry, builtin, get_card
from visor.models.registry import imagenet1k_labels


def test_list_and_default_card():
    assert visor.models.list() == ["deeplabv3_voc", "efficientnet_lite0", "yolox_nano", "yunet"]
    card = get_card("efficientnet_lite0")
    assert card.task == "classification" and card.num_classes == 1000
    assert card.weights.kind == "package"
    assert card.weights.sha256 == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    p = card.preprocess
    assert (p.input_size, p.resize, p.crop_pct, p.interpolation) == ((224, 224), "center_crop", 0.875, "bicubic")
    assert [round(m * 255, 6) for m in p.mean] == [127.0] * 3
    assert [round(s * 255, 6) for s in p.std] == [128.0] * 3
    assert card.license == "Apache-2.0" and "imagenet_val_top1" in card.metrics


def test_labels_are_human_readable_and_unique():
    labels = imagenet1k_labels()
    assert len(labels) == len(set(labels)) == 1000
    assert (labels[0], labels[779], labels[817]) == ("tench", "school bus", "sports car")


def test_labels_of_the_imagenette_classes(shared_data):
    classes = json.loads((shared_data("imagenette-dev") / "classes.json").read_text())
    labels = imagenet1k_labels()
    ours = {info["name"]: labels[info["imagenet_index"]] for info in classes.values()}
    assert ours == {
        "tench": "tench",
        "English springer": "English Springer Spaniel",
        "cassette player": "cassette player",
        "chain saw": "chainsaw",
        "church": "church",
        "French horn": "French horn",
        "garbage truck": "garbage truck",
        "gas pump": "gas pump",
        "golf ball": "golf ball",
        "parachute": "parachute",
    }


def test_unknown_name_suggests():
    with pytest.raises(ModelNotFound, match="Did you mean 'efficientnet_lite0'"):
        get_card("efficientnet-lite0")
    with pytest.raises(ModelNotFound):
        visor.load("no_such_model")


def test_duplicate_names_are_an_error():
    card = get_card("efficientnet_lite0")
    reg = Registry([card])
    with pytest.raises(ConfigError, match="already registered"):
        reg.add(card)
    assert len(reg) == 1 and "efficientnet_lite0" in reg and list(reg) == [card]


def test_builtin_registries_are_independent():
    a = builtin()
    a.add(get_card("efficientnet_lite0").replace(name="mine"))
    assert "mine" not in builtin()
