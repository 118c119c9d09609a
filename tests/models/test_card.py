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
        ({"task": "not a task"}, "task must be a non-empty identifier"),
        ({"task": ""}, "task must be a non-empty identifier"),
        ({"output_format": "yolo-v8"}, "output_format must be a non-empty identifier"),
        ({"labelz": ["a"]}, "Did you mean 'labels'"),
        ({"weights": {"kind": "url", "location": "https://example.invalid/w.pth"}}, "need a sha256"),
        ({"weights": {"kind": "path", "location": "w", "sha256": "123"}}, "64 hex digits"),
        ({"weights": {"kind": "url", "location": 5, "sha256": SHA}}, "non-empty string"),
        ({"weights": {"kind": "path", "location": ""}}, "non-empty string"),
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


def test_task_and_output_format_are_open_identifiers(tmp_path):
    """A card may name any task and output format (the task registry decides what loads); the JSON form is
    unchanged."""
    card = make_card(task="tracking", output_format="bytetrack_v1")
    assert ModelCard.load(card.save(tmp_path)) == card
    data = json.loads((tmp_path / "card.json").read_text())
    assert (data["task"], data["output_format"]) == ("tracking", "bytetrack_v1")
    assert sorted(data) == ["architecture", "description", "labels", "license", "metrics", "name", "output_format",
                            "preprocess", "source", "task", "temperature", "weights"]


def test_missing_and_broken_card_files(tmp_path):
    with pytest.raises(ModelNotFound):
        ModelCard.load(tmp_path)
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(ConfigError):
        ModelCard.load(tmp_path)


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deeply_nested_card_is_a_config_error(tmp_path, opener):
    """card.json nested 100,000 deep raised RecursionError; now a ConfigError naming the bound."""
    closer = "]" if opener == "[" else "}"
    (tmp_path / "card.json").write_text(opener * 100_000 + "1" + closer * 100_000)
    with pytest.raises(ConfigError, match="more than 64 deep"):
        ModelCard.load(tmp_path)


def test_card_metrics_nested_past_the_bound_are_refused(tmp_path):
    """Nesting json.loads accepts but the rest of visor (asdict, json.dumps) would recurse on is refused too."""
    data = make_card().to_dict()
    data["metrics"] = {"deep": json.loads("[" * 200 + "]" * 200)}
    (tmp_path / "card.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="more than 64 deep"):
        ModelCard.load(tmp_path)
    data["metrics"] = {"deep": json.loads("[" * 30 + "]" * 30)}
    (tmp_path / "card.json").write_text(json.dumps(data))
    assert ModelCard.load(tmp_path).metrics == data["metrics"]


def test_card_file_size_is_bounded(tmp_path, monkeypatch):
    from visor.models import card as card_mod

    make_card().save(tmp_path)
    monkeypatch.setattr(card_mod, "MAX_CARD_BYTES", 100)
    with pytest.raises(ConfigError, match="larger than 100 bytes"):
        ModelCard.load(tmp_path)


def test_card_json_that_is_a_fifo_is_not_opened(tmp_path):
    import os
    import threading

    os.mkfifo(tmp_path / "card.json")
    raised: list[BaseException] = []

    def load():
        try:
            ModelCard.load(tmp_path)
        except BaseException as e:  # noqa: BLE001 - checked below
            raised.append(e)

    worker = threading.Thread(target=load, daemon=True)  # opening the FIFO would block it forever
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "ModelCard.load blocked on a FIFO named card.json"
    assert len(raised) == 1 and isinstance(raised[0], ModelNotFound), raised


@pytest.mark.parametrize("url", ["http://example.com/w.pth", "file:///etc/passwd", "ftp://example.com/w"])
def test_card_with_a_non_https_url_is_refused(tmp_path, url):
    data = make_card().to_dict()
    data["weights"] = {"kind": "url", "location": url, "sha256": SHA}
    (tmp_path / "card.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="https"):
        ModelCard.load(tmp_path)
