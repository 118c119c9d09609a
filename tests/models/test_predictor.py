"""The Predictor base: a new model family is one subclass plus one task-registry entry, loaded through
visor.load; the card's preprocessing (layout, channel order) drives the input; predict / predict_iter;
unknown tasks and output formats refused by load."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

import visor
from visor.errors import ConfigError, CorruptImage, ImageNotFound
from visor.models import Classifier, Detector, ModelCard, Predictor, Preprocess, WeightsSource
from visor.models.preprocess import Geometry
from visor.models.runtime import OnnxSession
from visor.models.tasks import TaskSpec, builtin_tasks
from visor.models.weights import sha256_file
from visor.retrieval.embed import Embedder

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"


# --------------------------------------------------------------------------- a tiny family: mean colour


class MeanColor(Predictor[tuple[float, float, float]]):
    """Mean colour of the model input, per channel in the order the model sees them (0..255)."""

    task: ClassVar[str] = "mean_color"
    default_batch_size: ClassVar[int] = 2

    def postprocess(self, outputs, metas, *, digits: int = 3):
        return [tuple(round(float(v), digits) for v in row) for row in np.asarray(outputs)]


def mean_color_onnx(path: Path, *, layout: str, batch: int | str = "N") -> Path:
    """ReduceMean over the spatial axes: [N, 3, H, W] (or [N, H, W, 3]) -> [N, 3]."""
    import onnx
    from onnx import TensorProto, helper

    shape = [batch, 3, 8, 8] if layout == "nchw" else [batch, 8, 8, 3]
    axes = [2, 3] if layout == "nchw" else [1, 2]
    inp = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)
    out = helper.make_tensor_value_info("mean", TensorProto.FLOAT, [batch, 3])
    node = helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=axes, keepdims=0)
    model = helper.make_model(helper.make_graph([node], "mean_color", [inp], [out]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, os.fspath(path))
    return path


def mean_color_folder(folder: Path, *, layout: str = "nchw", channel_order: str = "rgb", task: str = "mean_color",
                      output_format: str = "channel_means", batch: int | str = "N") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = mean_color_onnx(folder / "model.onnx", layout=layout, batch=batch)
    ModelCard(
        name=f"mean-color-{layout}-{channel_order}",
        task=task,
        architecture="reduce_mean",
        weights=WeightsSource(kind="path", location="model.onnx", sha256=sha256_file(onnx_path), format="onnx"),
        labels=("c0", "c1", "c2"),
        # 0..255 in, no normalisation: the output is the mean pixel value itself
        preprocess=Preprocess(input_size=(8, 8), resize="squash", interpolation="bilinear", mean=(0.0,) * 3,
                              std=(1 / 255,) * 3, channel_order=channel_order, layout=layout),
        output_format=output_format,
        license="Apache-2.0",
    ).save(folder)
    return folder


MEAN_COLOR = TaskSpec(
    name="mean_color",
    verb="mean_color",
    predictor=f"{__name__}:MeanColor",
    result="builtins:tuple",
    output_formats=("channel_means",),
    options=("digits",),
)


@pytest.fixture
def tasks():
    return builtin_tasks().with_tasks(MEAN_COLOR)


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def png_bytes(rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    solid(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("layout", "order", "expected"), [
    ("nchw", "rgb", (200.0, 100.0, 50.0)),
    ("nhwc", "rgb", (200.0, 100.0, 50.0)),
    ("nchw", "bgr", (50.0, 100.0, 200.0)),
    ("nhwc", "bgr", (50.0, 100.0, 200.0)),
])
def test_a_new_family_is_a_subclass_and_a_registry_entry(tmp_path, tasks, layout, order, expected):
    model = visor.load(mean_color_folder(tmp_path / "m", layout=layout, channel_order=order), tasks=tasks)
    assert type(model) is MeanColor and model.task == "mean_color" and model.labels == ("c0", "c1", "c2")
    assert model.card.preprocess.layout == layout
    # the input is built from the card: an NHWC graph gets NHWC, a BGR model gets BGR
    assert model.predict(solid((200, 100, 50))) == expected
    assert model.predict(png_bytes((200, 100, 50))) == expected
    assert model.predict([solid((200, 100, 50)), solid((0, 0, 255))]) == [
        expected, (0.0, 0.0, 255.0) if order == "rgb" else (255.0, 0.0, 0.0)]


def test_the_builtin_registry_does_not_know_the_family(tmp_path):
    folder = mean_color_folder(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"unknown task 'mean_color'.*Tasks this visor knows: classification, "
                                          r"detection, face_detection"):
        visor.load(folder)


def test_a_misspelled_task_suggests_the_known_one(tmp_path):
    folder = mean_color_folder(tmp_path / "m", task="clasification", output_format="logits")
    with pytest.raises(ConfigError, match=r"unknown task 'clasification'\. Did you mean 'classification'\?"):
        visor.load(folder)


def test_an_output_format_the_task_does_not_read_is_refused(tmp_path, tasks):
    with pytest.raises(ConfigError, match=r"a classification model's output_format must be one of \['logits'\], "
                                          r"got 'yolox'"):
        visor.load(mean_color_folder(tmp_path / "a", task="classification", output_format="yolox"))
    with pytest.raises(ConfigError, match=r"output_format must be one of \['channel_means'\], got 'logits'"):
        visor.load(mean_color_folder(tmp_path / "b", output_format="logits"), tasks=tasks)


def test_the_constructor_refuses_a_card_of_another_task(tmp_path, tasks):
    model = visor.load(mean_color_folder(tmp_path / "m"), tasks=tasks)
    with pytest.raises(ConfigError, match=r"is a mean_color model, not a classification model \(Classifier\)"):
        Classifier(model.card, model.session)
    with pytest.raises(ConfigError, match=r"is a mean_color model, not a detection model"):
        Detector.from_card(model.card, base_dir=tmp_path / "m")


def test_predict_iter_goes_past_bad_images_in_order(tmp_path, tasks):
    model = visor.load(mean_color_folder(tmp_path / "m"), tasks=tasks)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(png_bytes((1, 2, 3))[:60])
    sources = [solid((10, 20, 30)), corrupt, tmp_path / "missing.jpg", png_bytes((40, 50, 60)), solid((70, 80, 90))]
    outcomes = list(model.predict_iter(sources, batch_size=2))
    assert [o.source is s for o, s in zip(outcomes, sources, strict=True)] == [True] * 5
    assert [o.ok for o in outcomes] == [True, False, False, True, True]
    assert [type(o.error) for o in outcomes if not o.ok] == [CorruptImage, ImageNotFound]
    assert [o.result for o in outcomes if o.ok] == [(10.0, 20.0, 30.0), (40.0, 50.0, 60.0), (70.0, 80.0, 90.0)]
    # predict stops at the first bad image with its typed error
    with pytest.raises(CorruptImage):
        model.predict(sources)


def test_options_reach_postprocess_and_unknown_ones_are_refused(tmp_path, tasks):
    model = visor.load(mean_color_folder(tmp_path / "m"), tasks=tasks)
    assert model.predict(solid((1, 2, 3)), digits=0) == (1.0, 2.0, 3.0)
    with pytest.raises(ConfigError, match=r"MeanColor has no option 'digit'\. Did you mean 'digits'\?"):
        model.predict(solid((1, 2, 3)), digit=1)
    with pytest.raises(ConfigError, match="batch_size"):
        model.predict([solid((1, 2, 3))], batch_size=0)


def test_a_graph_with_a_fixed_batch_is_fed_in_slices(tmp_path, tasks):
    model = visor.load(mean_color_folder(tmp_path / "m", batch=1), tasks=tasks)
    assert model.max_batch == 1 and model.session.fixed_batch == 1
    colors = [(i, 2 * i, 3 * i) for i in range(5)]
    assert model.predict([solid(c) for c in colors], batch_size=4) == [tuple(map(float, c)) for c in colors]


def test_prepare_gives_the_geometry_of_each_image(tmp_path, tasks):
    model = visor.load(mean_color_folder(tmp_path / "m"), tasks=tasks)
    batch, metas = model.prepare([solid((5, 5, 5), (40, 30)), solid((5, 5, 5), (16, 8))])
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == np.float32
    assert metas == [Geometry(40, 30, 0.2, 0.0, 0.0, 8 / 30), Geometry(16, 8, 0.5, 0.0, 0.0, 1.0)]
    np.testing.assert_allclose(metas[0].to_original(np.array([[0, 0, 8, 8]])), [[0, 0, 40, 30]])


def test_session_exposes_its_outputs(tmp_path):
    session = OnnxSession(mean_color_onnx(tmp_path / "m.onnx", layout="nchw"))
    assert session.input_names == ("pixels",) and session.output_names == ("mean",)
    x = np.full((1, 3, 8, 8), 7.0, np.float32)
    (mean,) = session.run_outputs(["mean"], x)
    np.testing.assert_array_equal(mean, [[7.0, 7.0, 7.0]])
    assert session.fixed_batch is None


# --------------------------------------------------------------------------- the built-in families


def test_classifier_detector_and_embedder_are_predictors(classifier):
    assert issubclass(Classifier, Predictor) and issubclass(Detector, Predictor) and issubclass(Embedder, Predictor)
    # the generic predict and the family's own verb agree
    assert classifier.predict(SAMPLE, top_k=3).to_dict() == classifier.classify(SAMPLE, top_k=3).to_dict()
    assert classifier.predict(SAMPLE, top_k=1).top[0] == "school bus"
    with pytest.raises(ConfigError, match="Did you mean 'top_k'"):
        classifier.predict(SAMPLE, topk=1)
    # the legacy postprocess(logits, top_k) form still works
    logits = classifier.logits(classifier.preprocess([classifier.decode(SAMPLE)]))
    assert classifier.postprocess(logits, 2)[0].to_dict() == classifier.classify(SAMPLE, top_k=2).to_dict()


def test_embedder_predicts_unit_vectors_through_the_base(classifier):
    embedder = Embedder(classifier)
    vector = embedder.predict(SAMPLE)
    assert vector.shape == (1280,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    np.testing.assert_array_equal(embedder.embed(SAMPLE), vector)
    outcomes = list(embedder.predict_iter([SAMPLE, b"not an image", SAMPLE], batch_size=2))
    assert [o.ok for o in outcomes] == [True, False, True]
    np.testing.assert_allclose(outcomes[2].result, vector, atol=1e-6)
