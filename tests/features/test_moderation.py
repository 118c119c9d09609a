"""Moderation: the score -> likelihood mapping, exactly; a flat image is safe; a typed error without nudenet."""

from __future__ import annotations

import numpy as np
import pytest

from visor.errors import ConfigError
from visor.features import moderation as mod
from visor.types.detections import Detections


@pytest.mark.parametrize(
    ("score", "level"),
    [(0.0, "VERY_UNLIKELY"), (0.199, "VERY_UNLIKELY"), (0.2, "UNLIKELY"), (0.399, "UNLIKELY"), (0.4, "POSSIBLE"),
     (0.599, "POSSIBLE"), (0.6, "LIKELY"), (0.799, "LIKELY"), (0.8, "VERY_LIKELY"), (1.0, "VERY_LIKELY")],
)
def test_likelihood_from_score(score: float, level: str) -> None:
    assert mod.likelihood_from_score(score) == level


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
def test_likelihoods_mapping(scores: dict[str, float], expected: dict[str, str]) -> None:
    assert mod.likelihoods(scores) == expected


def test_class_scores_keeps_the_best_per_class() -> None:
    labels = ("A", "B")
    d = Detections(np.zeros((3, 4)), [0.3, 0.7, 0.5], [0, 0, 1])
    assert mod.class_scores(d, labels) == pytest.approx({"A": 0.7, "B": 0.5})


def test_flat_colour_image_is_very_unlikely() -> None:
    pytest.importorskip("nudenet")
    moderator = mod.Moderator()
    assert moderator.card.license.startswith("AGPL")
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, :160] = (40, 120, 200)
    image[:, 160:] = (230, 200, 60)
    result = moderator.moderate(image)
    assert (result.adult, result.racy) == ("VERY_UNLIKELY", "VERY_UNLIKELY")
    d = result.to_dict()
    assert d["type"] == "moderation" and d["adult"] == "VERY_UNLIKELY"


def test_missing_nudenet_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'visor-vision\[moderation\]'"):
        mod.Moderator()
