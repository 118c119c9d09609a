"""The service reads the task registry: a model manager keyed by model, one pipeline for every task.

A task added to a custom TaskRegistry (a tiny ONNX family defined here) is loaded, batched, answered at its
route and listed, without any change to the serve code; the routes' typed options; ``--detector none``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from visor.errors import InvalidInput, ModelNotFound
from visor.models import ModelCard, Predictor, Preprocess, WeightsSource
from visor.models.tasks import TaskSpec, builtin_tasks
from visor.models.weights import sha256_file

BUS = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"


# --------------------------------------------------------------------------- a tiny family: mean colour


class MeanColor(Predictor[tuple[float, float, float]]):
    """Mean colour of the 8x8 model input, per channel (0..255)."""

    task: ClassVar[str] = "mean_color"

    def postprocess(self, outputs, metas, *, digits: int = 3):
        return [tuple(round(float(v), digits) for v in row) for row in np.asarray(outputs)]


MEAN_COLOR = TaskSpec(name="mean_color", verb="mean_color", predictor=f"{__name__}:MeanColor",
                      result="builtins:tuple", output_formats=("channel_means",), options=("digits",),
                      route="/v1/mean_color", description="the mean colour of each image")


def mean_color_model(folder: Path) -> Path:
    """A model folder: ReduceMean over [N, 3, 8, 8] -> [N, 3], its card with a squash to 8x8 and no normalisation."""
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    inp = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 8, 8])
    out = helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N", 3])
    node = helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[2, 3], keepdims=0)
    model = helper.make_model(helper.make_graph([node], "mean_color", [inp], [out]),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, os.fspath(folder / "model.onnx"))
    ModelCard(
        name="mean-color", task="mean_color", architecture="reduce_mean",
        weights=WeightsSource(kind="path", location="model.onnx", sha256=sha256_file(folder / "model.onnx"),
                              format="onnx"),
        labels=("r", "g", "b"),
        preprocess=Preprocess(input_size=(8, 8), resize="squash", interpolation="bilinear", mean=(0.0,) * 3,
                              std=(1 / 255,) * 3),
        output_format="channel_means", license="Apache-2.0",
    ).save(folder)
    return folder


def run_coroutine(coro):
    """``asyncio.run`` in a thread of its own: a test run before this one may have left an event loop
    running in the main thread (then asyncio.run there refuses)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def png(rgb: tuple[int, int, int]) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), rgb).save(buf, "PNG")
    return buf.getvalue()


def settings(tmp: Path, **kw):
    """Service settings on ``tmp``, without keys, calibration or (unless given) the segmenter."""
    from visor.serve.settings import ServeSettings

    kw.setdefault("segmenter", None)
    return ServeSettings(db=f"sqlite:///{tmp / 'serve.db'}", faces_db=str(tmp / "faces.db"), require_keys=False,
                         batch_calibration=False, **kw)


# --------------------------------------------------------------------------- a new task, served unchanged


def test_a_task_of_a_custom_registry_is_served_through_the_same_pipeline(tmp_path, visor_cache):
    from fastapi.testclient import TestClient

    from visor.serve.app import create_app
    from visor.serve.manager import ModelManager
    from visor.serve.service import VisorService

    folder = mean_color_model(tmp_path / "mean")
    tasks = builtin_tasks().with_tasks(MEAN_COLOR)
    s = settings(tmp_path, detector="none", max_wait_ms=500, review_sample_rate=1.0, log_predictions=True)
    manager = ModelManager(s, tasks=tasks, models={"mean_color": str(folder)})
    assert manager.served_tasks() == ["classification", "mean_color"] and not manager.ready
    service = VisorService(s, manager=manager)
    with TestClient(create_app(s, service=service)) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        assert client.get("/readyz").json()["models"] == ["efficientnet_lite0", "mean-color"]
        models = client.get("/v1/models").json()["models"]
        assert [(m["role"], m["name"], m["task"], m["num_classes"]) for m in models] == [
            ("classifier", "efficientnet_lite0", "classification", 1000), ("mean_color", "mean-color", "mean_color", 3)]
        # the registry's route, its options (digits, from the query string), micro-batched with the pipeline
        r = client.post("/v1/mean_color", params={"digits": "0"},
                        files=[("images", ("a.png", png((200, 100, 50)), "image/png")),
                               ("images", ("b.png", png((0, 0, 255)), "image/png")),
                               ("images", ("c.txt", b"not an image", "text/plain"))])
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "mean-color"
        assert [x.get("mean_color") for x in body["results"]] == [[200.0, 100.0, 50.0], [0.0, 0.0, 255.0], None]
        assert body["results"][2]["error"]["code"] == "unsupported_format"
        # not a reviewable result type: never queued, even when every prediction is sampled for review
        assert [x["review_id"] for x in body["results"][:2]] == [None, None]
        r = client.post("/v1/mean_color", json={"images": [{"content": __import__("base64").b64encode(
            png((9, 8, 7))).decode()}], "digits": 1})
        assert r.json()["results"][0]["mean_color"] == [9.0, 8.0, 7.0]
        metrics = client.get("/metrics").text
        # one batch per request: the two good images of the first arrived within the 500 ms window
        assert 'visor_batch_size_count{model="mean-color"} 2.0' in metrics
        assert 'visor_images_total{outcome="ok",route="mean_color"} 3.0' in metrics
        assert client.get("/openapi.json").json()["paths"]["/v1/mean_color"]["post"]["description"] == \
            "the mean colour of each image"
        # the classifier still answers beside it, and is queued for review (sample rate 1)
        r = client.post("/v1/classify", files=[("images", ("bus.jpg", BUS.read_bytes(), "image/jpeg"))])
        assert r.json()["results"][0]["classifications"]["predictions"][0]["label"] == "school bus"
        assert isinstance(r.json()["results"][0]["review_id"], int)
        # the library call every route makes
        result = run_coroutine(manager.predict("mean_color", png((10, 20, 30)), time.monotonic() + 10, digits=2))
        assert result == (10.0, 20.0, 30.0)
    from visor.serve.db import ServiceDB
    from visor.serve.predictions import PredictionLog

    db = ServiceDB(s.db)
    try:
        assert PredictionLog(db).count() == 4  # 3 mean colours and 1 classification
    finally:
        db.close()


def test_the_manager_refuses_a_task_it_does_not_know(tmp_path):
    from visor.errors import ConfigError
    from visor.serve.manager import ModelManager

    with pytest.raises(ConfigError, match=r"unknown task 'mean_colour'"):
        ModelManager(settings(tmp_path), models={"mean_colour": "x"})


def test_the_manager_answers_by_task_before_and_after_loading(tmp_path, visor_cache, classifier):
    from visor.serve.manager import ModelManager, ModelsLoading

    manager = ModelManager(settings(tmp_path, detector=None))
    assert manager.serves("classification") and not manager.serves("detection")
    with pytest.raises(ModelNotFound, match=r"no object detector \(it was started with --detector none\)"):
        manager.require_task("detection")
    with pytest.raises(ModelsLoading, match="still loading"):
        manager.model_for("classification")
    manager.check_admission("classification")  # nothing to refuse before loading
    assert manager.models() == [] and manager.model_name("classification") is None
    manager.load()
    try:
        slot = manager.model_for("classification")
        assert (slot.name, slot.role, slot.task, slot.max_batch) == ("efficientnet_lite0", "classifier",
                                                                     "classification", 16)
        assert manager.model_name("classification") == "efficientnet_lite0"
        got = run_coroutine(manager.predict("classification", BUS.read_bytes(), time.monotonic() + 30, top_k=3))
        assert got.to_dict() == classifier.classify(BUS, top_k=3).to_dict()
        with pytest.raises(ModelNotFound):
            run_coroutine(manager.predict("detection", BUS.read_bytes(), time.monotonic() + 30))
    finally:
        manager.stop()


def test_split_outputs_cuts_a_batch_back_per_item():
    from visor.serve.manager import split_outputs

    out = np.arange(12).reshape(6, 2)
    parts = split_outputs(out, [1, 3, 2])
    assert [p.tolist() for p in parts] == [[[0, 1]], [[2, 3], [4, 5], [6, 7]], [[8, 9], [10, 11]]]
    pair = split_outputs((out, out[:, 0]), [4, 2])
    assert [(a.shape, b.tolist()) for a, b in pair] == [((4, 2), [0, 2, 4, 6]), ((2, 2), [8, 10])]


# --------------------------------------------------------------------------- typed options


def test_route_options_are_typed_and_checked_once():
    from visor.serve.inputs import ClassifyOptions, DetectOptions, task_options

    assert ClassifyOptions.from_request({"top_k": "3"}) == ClassifyOptions(3)
    assert ClassifyOptions.from_request({}, top_k=7).as_kwargs() == {"top_k": 7}
    assert DetectOptions.from_request({"conf": "0.5", "max_det": 10}, iou=0.6) == DetectOptions(0.5, 0.6, 10)
    assert DetectOptions().as_kwargs() == {"conf": 0.25, "iou": 0.45, "max_det": 300}
    for bad, message in [({"top_k": 0}, "top_k must be between 1 and 1000, got 0"),
                         ({"top_k": 2.0}, "top_k must be a whole number, got 2.0"),
                         ({"top_k": True}, "top_k must be a whole number, got True")]:
        with pytest.raises(InvalidInput, match=re.escape(message)):
            ClassifyOptions.from_request(bad)
    with pytest.raises(InvalidInput, match=r"conf must be between 0 and 1, got 1\.5"):
        DetectOptions(conf=1.5)
    with pytest.raises(InvalidInput, match="max_det must be a whole number"):
        DetectOptions(max_det="9")
    assert task_options("detection", (), {"conf": "0.3"}) == DetectOptions(conf=0.3)
    assert task_options("mean_color", ("digits",), {"digits": "2", "other": "x"}) == {"digits": 2}
    assert task_options("mean_color", ("digits",), {"digits": "0.5"}) == {"digits": 0.5}


# --------------------------------------------------------------------------- the default detector


def test_the_detector_defaults_to_yolox_nano_and_none_switches_it_off(capsys):
    from visor.cli.main import main
    from visor.serve.settings import ServeSettings

    assert ServeSettings().detector == "yolox_nano"
    assert ServeSettings(detector="none").detector is None and ServeSettings(detector="None").detector is None
    assert main(["serve", "--print-settings", "--no-keys"]) == 0
    assert json.loads(capsys.readouterr().out)["detector"] == "yolox_nano"
    assert main(["serve", "--print-settings", "--no-keys", "--detector", "none"]) == 0
    assert json.loads(capsys.readouterr().out)["detector"] is None


def test_the_segmenter_defaults_to_deeplabv3_voc_and_none_switches_it_off(capsys):
    from visor.cli.main import main

    assert main(["serve", "--print-settings", "--no-keys"]) == 0
    assert json.loads(capsys.readouterr().out)["segmenter"] == "deeplabv3_voc"
    assert main(["serve", "--print-settings", "--no-keys", "--segmenter", "none"]) == 0
    assert json.loads(capsys.readouterr().out)["segmenter"] is None
