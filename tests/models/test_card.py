import json

import pytest

from visor.errors import ConfigError, ModelNotFound
from visor.models import ModelCard, Preprocess, WeightsSource

SHA = "ab" * 32


def make_card(**changes) -> ModelCard:
    card = ModelCard(
        name="tiny",
        task="classification",
        architecture="efficientnet_lite0",
        weights=WeightsSource(kind="path", location="weights.pth", sha256=SHA),
        labels=("a", "b"),
        preprocess=Preprocess(input_size=(32, 48), interpolation="bilinear", mean=(0.5,) * 3, std=(0.25,) * 3),
        license="MIT",
        metrics={"val_top1": 90.0},
    )
    return card.replace(**changes)


def test_round_trip_through_json(tmp_path):
    card = make_card()
    path = card.save(tmp_path)
    assert path.name == "card.json"
    data = json.loads(path.read_text())
    assert data["preprocess"]["input_size"] == [32, 48]
    assert data["weights"] == {"kind": "path", "location": "weights.pth", "sha256": SHA, "format": "torch"}
    assert ModelCard.load(tmp_path) == card
    assert ModelCard.from_dict(card.to_dict()) == card
    assert card.num_classes == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"preprocess": {"inpt_size": [1, 1]}}, "Did you mean 'input_size'"),
        ({"preprocess": {"interpolation": "bicubc"}}, "Did you mean 'bicubic'"),
        ({"task": "clasification"}, "Did you mean 'classification'"),
        ({"labelz": ["a"]}, "Did you mean 'labels'"),
        ({"weights": {"kind": "url", "location": "https://example.invalid/w.pth"}}, "need a sha256"),
        ({"weights": {"kind": "path", "location": "w", "sha256": "123"}}, "64 hex digits"),
        ({"labels": []}, "needs its labels"),
        ({"preprocess": {"crop_pct": 1.5}}, "crop_pct"),
        ({"preprocess": {"std": [0, 1, 1]}}, "std > 0"),
    ],
)
def test_invalid_cards_explain_themselves(change, message):
    data = make_card().to_dict()
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    if "weights" in change:
        data["weights"] = change["weights"]
    with pytest.raises(ConfigError, match=message):
        ModelCard.from_dict(data)


def test_missing_and_broken_card_files(tmp_path):
    with pytest.raises(ModelNotFound):
        ModelCard.load(tmp_path)
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(ConfigError):
        ModelCard.load(tmp_path)
