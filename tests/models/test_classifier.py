"""The default classifier end to end: ONNX/PyTorch parity, ImageNet accuracy, API behaviour."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import visor
from visor.errors import ConfigError, CorruptImage, ImageNotFound, ImageTooLarge, UnsupportedFormat
from visor.models import Classifier, ModelCard, Preprocess, WeightsSource, architectures
from visor.models.classifier import softmax
from visor.models.preprocess import preprocess
from visor.models.weights import resolve, sha256_file
from visor.types import Classifications

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"


def accuracy(clf: Classifier, items) -> tuple[float, float]:
    results = clf.classify([p for p, _ in items], top_k=5)
    top = np.array([r.class_id for r in results])
    y = np.array([label for _, label in items])
    return float((top[:, 0] == y).mean()), float((top == y[:, None]).any(axis=1).mean())


def test_imagenet_accuracy_on_imagenette(classifier, imagenette):
    assert len(imagenette) == 450
    top1, top5 = accuracy(classifier, imagenette)
    print(f"imagenette-dev (450 images, 1000-way): top-1 {top1:.2%}, top-5 {top5:.2%}")
    assert top1 >= 0.75
    assert top5 >= 0.93


def test_card_preprocessing_beats_imagenet_default_mean_std(classifier, imagenette):
    """The card's (x-127)/128 is right for these TF weights; torchvision's mean/std costs points."""
    val = [item for item in imagenette if "/val/" in item[0].as_posix()]
    card = classifier.card
    wrong = card.preprocess.__class__(**{**card.preprocess.__dict__,
                                         "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    wrong_clf = Classifier(card.replace(preprocess=wrong), classifier.session)
    right_top1, _ = accuracy(classifier, val)
    wrong_top1, _ = accuracy(wrong_clf, val)
    print(f"val top-1: card preprocessing {right_top1:.2%}, ImageNet mean/std {wrong_top1:.2%}")
    assert right_top1 - wrong_top1 >= 0.03


def test_onnx_runtime_matches_pytorch_on_real_images(classifier, imagenette):
    # 8 real images, one from each of 8 classes.
    paths = [p for p, _ in imagenette[::30][:8]]
    assert len({p.parent for p in paths}) == 8
    batch = classifier.preprocess([classifier.decode(p) for p in paths])
    card = classifier.card
    model = architectures.load(card.architecture, resolve(card.weights), num_classes=card.num_classes)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    got = classifier.logits(batch)
    diff = float(np.abs(got - expected).max())
    print(f"max abs logit difference ONNX Runtime vs PyTorch: {diff:.2e}")
    assert diff <= 1e-3


def test_sample_image_is_a_school_bus(classifier):
    result = classifier.classify(SAMPLE, top_k=3)
    assert isinstance(result, Classifications)
    assert result.top[0] == "school bus" and result.top[1] > 0.9
    assert result.class_id[0] == 779 and result.model == "efficientnet_lite0"


def test_every_input_kind_gives_the_same_result(classifier):
    data = SAMPLE.read_bytes()
    ref = classifier.classify(SAMPLE).to_dict()
    for source in (str(SAMPLE), data, io.BytesIO(data), Image.open(SAMPLE)):
        assert classifier.classify(source).to_dict() == ref
    # Already-decoded pixels skip the JPEG draft decode, so scores may differ slightly.
    arr = visor.load_image(SAMPLE)
    assert classifier.classify(arr).class_id.tolist() == ref_ids(ref)


def ref_ids(d):
    return [p["class_id"] for p in d["predictions"]]


def test_single_in_single_out_and_list_in_list_out(classifier):
    assert isinstance(classifier.classify(SAMPLE), Classifications)
    many = classifier.classify([SAMPLE, SAMPLE, SAMPLE], batch_size=2, top_k=1)
    assert isinstance(many, list) and len(many) == 3
    assert len({r.to_json() for r in many}) == 1
    assert classifier.classify([]) == []
    stack = np.stack([visor.load_image(SAMPLE)] * 2)
    assert len(classifier.classify(stack)) == 2


def test_batching_does_not_change_results(classifier, imagenette):
    paths = [p for p, _ in imagenette[:7]]
    one = [r.to_dict() for r in classifier.classify(paths, batch_size=1)]
    three = [r.to_dict() for r in classifier.classify(paths, batch_size=3)]
    for a, b in zip(one, three, strict=True):
        assert ref_ids(a) == ref_ids(b)
        np.testing.assert_allclose([p["confidence"] for p in a["predictions"]],
                                   [p["confidence"] for p in b["predictions"]], atol=1e-5)


def test_top_level_classify(classifier):
    assert visor.classify(SAMPLE, top_k=2, model=classifier).top[0] == "school bus"
    assert visor.classify([SAMPLE], top_k=1)[0].label.tolist() == ["school bus"]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda tmp: tmp / "missing.jpg", ImageNotFound),
        (lambda tmp: _write(tmp / "text.jpg", b"hello, not a jpeg\n"), UnsupportedFormat),
        (lambda tmp: _write(tmp / "cut.jpg", SAMPLE.read_bytes()[:5000]), CorruptImage),
    ],
)
def test_bad_inputs_raise_typed_errors(classifier, tmp_path, make, error):
    with pytest.raises(error):
        classifier.classify(make(tmp_path))
    with pytest.raises(error):
        classifier.classify([SAMPLE, make(tmp_path)])


def _write(path, data):
    path.write_bytes(data)
    return path


def test_limits_apply_through_the_classifier(classifier):
    small = Classifier(classifier.card, classifier.session, limits=visor.ImageLimits(max_pixels=1000))
    with pytest.raises(ImageTooLarge):
        small.classify(SAMPLE)


def test_classify_iter_keeps_going_and_keeps_order(classifier, tmp_path):
    bad = _write(tmp_path / "bad.png", b"\x89PNG\r\n\x1a\n broken")
    sources = [SAMPLE, bad, tmp_path / "none.jpg", SAMPLE]
    outcomes = list(classifier.classify_iter(sources, top_k=1, batch_size=3))
    assert [o.ok for o in outcomes] == [True, False, False, True]
    assert [type(o.error).__name__ for o in outcomes if not o.ok] == ["CorruptImage", "ImageNotFound"]
    assert outcomes[1].to_dict()["error"]["code"] == "corrupt_image"
    assert outcomes[3].to_dict()["classifications"]["predictions"][0]["label"] == "school bus"


def test_batch_size_must_be_positive(classifier):
    with pytest.raises(ConfigError):
        classifier.classify([SAMPLE], batch_size=0)


def test_softmax_is_stable():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(softmax(np.array([[0.0, 2 * np.log(3.0)]]), temperature=2.0), [[0.25, 0.75]],
                               rtol=1e-6)


def test_inference_uses_the_card_temperature(classifier):
    hot = Classifier(classifier.card.replace(temperature=2.0), classifier.session)
    base, soft = classifier.classify(SAMPLE, top_k=1000), hot.classify(SAMPLE, top_k=1000)
    assert soft.class_id[0] == base.class_id[0] and soft.confidence[0] < base.confidence[0]
    with pytest.raises(ConfigError):
        classifier.card.replace(temperature=0.0)


def test_load_from_a_model_folder(tmp_path, classifier):
    """A folder with card.json and weights beside it loads like a registry model."""
    card = classifier.card
    weights = resolve(card.weights)
    shutil.copy(weights, tmp_path / "weights.pth")
    local = card.replace(
        name="my_lite0",
        weights=WeightsSource(kind="path", location="weights.pth", sha256=sha256_file(weights)),
    )
    local.save(tmp_path)
    for where in (tmp_path, tmp_path / "card.json", tmp_path / "weights.pth"):
        clf = visor.load(where)
        assert clf.name == "my_lite0"
    assert clf.classify(SAMPLE).top[0] == "school bus"


def test_load_refuses_tampered_local_weights(tmp_path, classifier):
    (tmp_path / "weights.pth").write_bytes(b"not the weights")
    card = classifier.card.replace(
        weights=WeightsSource(kind="path", location="weights.pth", sha256=classifier.card.weights.sha256))
    card.save(tmp_path)
    with pytest.raises(visor.WeightsIntegrityError):
        visor.load(tmp_path)


def test_damaged_cached_export_is_rebuilt(tmp_path):
    first = visor.load("efficientnet_lite0", cache_dir=tmp_path)
    onnx = next((tmp_path / "onnx").glob("*/model.onnx"))
    onnx.write_bytes(b"garbage")
    again = visor.load("efficientnet_lite0", cache_dir=tmp_path)
    assert again.classify(SAMPLE).to_dict() == first.classify(SAMPLE).to_dict()


def test_input_size_follows_the_card(tmp_path, classifier):
    """Preprocessing comes from the card: a 192 px card exports and runs a 192 px model."""
    card = classifier.card.replace(preprocess=Preprocess(**{**classifier.card.preprocess.__dict__,
                                                           "input_size": (192, 192)}))
    clf = Classifier.from_card(card, cache=tmp_path)
    assert clf.preprocess([Image.open(SAMPLE)]).shape == (1, 3, 192, 192)
    assert clf.classify(SAMPLE).top[0] == "school bus"
    assert preprocess([Image.open(SAMPLE)], card.preprocess).shape[-1] == 192
    assert isinstance(ModelCard.from_dict(card.to_dict()), ModelCard)


def test_cached_export_is_a_model_folder_that_needs_no_torch(tmp_path, classifier):
    visor.load("efficientnet_lite0", cache_dir=tmp_path)
    folder = next((tmp_path / "onnx").iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.onnx"]
    card = ModelCard.load(folder)
    assert card.weights.format == "onnx" and card.weights.sha256 == sha256_file(folder / "model.onnx")
    assert card.preprocess == classifier.card.preprocess and card.labels == classifier.labels
    exported = visor.load(folder)
    assert exported.classify(SAMPLE).to_dict() == classifier.classify(SAMPLE).to_dict()
