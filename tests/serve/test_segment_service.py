"""POST /v1/segment over real HTTP on coco128 photos: the mask as COCO RLE or PNG, class areas, typed errors,
the segmenter switched off, missing weights (503, never 500), and annotate's segmentation feature."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import start_server

#: coco128 photos and the Pascal VOC classes deeplabv3_voc finds in each (whole images, 257 px model input).
EXPECTED = {
    "000000000471.jpg": {"background", "bus"},  # a school bus
    "000000000036.jpg": {"background", "person"},  # a woman under an umbrella
    "000000000081.jpg": {"background", "aeroplane"},
    "000000000086.jpg": {"background", "motorbike", "person"},
    "000000000025.jpg": {"background"},  # giraffes: no VOC class
}
BUS = "000000000471.jpg"


def upload(*items: tuple[str, bytes]) -> list:
    return [("images", (name, data, "application/octet-stream")) for name, data in items]


@pytest.fixture(scope="module")
def coco(shared_data) -> Path:
    return shared_data("coco128") / "images"


@pytest.fixture(scope="module")
def segmenter(zoo_cache):
    from visor.models import load

    return load("deeplabv3_voc")


@pytest.fixture(scope="module")
def reference(segmenter, coco) -> dict:
    """The library's masks of the EXPECTED photos (the service must give exactly these)."""
    return {name: segmenter.predict(coco / name) for name in EXPECTED}


def test_segment_rle_gives_each_photos_classes_and_the_librarys_mask(live_server, coco, reference):
    r = httpx.post(f"{live_server.url}/v1/segment", headers=live_server.headers, timeout=60,
                   files=upload(*((n, (coco / n).read_bytes()) for n in EXPECTED), ("notes.jpg", b"no image")))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "deeplabv3_voc"
    results = body["results"]
    assert [x["image"] for x in results] == [*EXPECTED, "notes.jpg"]
    for name, x in zip(EXPECTED, results, strict=False):
        seg = x["segmentation"]
        assert set(x["areas"]) == EXPECTED[name], name
        assert x["areas"] == reference[name].areas and seg == reference[name].to_dict()
        assert (seg["width"], seg["height"]) == Image.open(coco / name).size
        assert sum(x["areas"].values()) == seg["width"] * seg["height"]
        assert x["review_id"] is None  # segmentation is not a reviewable task
        from visor.types.segmentation import SegmentationMask

        assert np.array_equal(SegmentationMask.from_dict(seg).mask, reference[name].mask)
    # the bus covers about a quarter of its photo
    assert results[0]["areas"]["bus"] / (640 * 427) == pytest.approx(0.259, abs=0.01)
    assert results[-1]["error"]["code"] == "unsupported_format"


def test_segment_png_in_json_and_as_the_answer(live_server, coco, reference):
    data = (coco / BUS).read_bytes()
    ref = reference[BUS]
    r = httpx.post(f"{live_server.url}/v1/segment", headers=live_server.headers, timeout=60,
                   json={"images": [{"content": base64.b64encode(data).decode(), "name": "bus.jpg"}],
                         "format": "png"})
    assert r.status_code == 200, r.text
    (x,) = r.json()["results"]
    seg = x["segmentation"]
    assert x["areas"] == {"background": ref.areas["background"], "bus": ref.areas["bus"]}
    assert {k: seg[k] for k in ("type", "model", "width", "height", "format")} == {
        "type": "segmentation", "model": "deeplabv3_voc", "width": 640, "height": 427, "format": "png"}
    assert seg["class_names"][6] == "bus" and len(seg["class_names"]) == 21
    png = Image.open(io.BytesIO(base64.b64decode(seg["png"])))
    assert png.mode == "P" and np.array_equal(np.asarray(png), ref.mask)
    # Accept: image/png with one image: the PNG itself, the areas and class names in headers
    r = httpx.post(f"{live_server.url}/v1/segment", headers={**live_server.headers, "Accept": "image/png"},
                   files=upload(("bus.jpg", data)), timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), ref.mask)
    assert json.loads(r.headers["x-visor-areas"]) == ref.areas and r.headers["x-visor-model"] == "deeplabv3_voc"
    assert json.loads(r.headers["x-visor-class-names"]) == list(ref.class_names)
    assert r.headers["content-disposition"] == 'inline; filename="bus.png"'


def test_segment_refuses_bad_requests_with_typed_4xx(live_server, coco):
    url, h = f"{live_server.url}/v1/segment", live_server.headers
    data = (coco / BUS).read_bytes()
    r = httpx.post(url, headers=h, params={"format": "jpg"}, files=upload(("a.jpg", data)))
    assert r.status_code == 400 and r.json()["error"] == {
        "type": "InvalidInput", "code": "invalid_input", "message": "format must be one of rle, png, got 'jpg'"}
    r = httpx.post(url, headers=h, json={"images": [{"content": base64.b64encode(data).decode()}], "format": 3})
    assert r.status_code == 400 and r.json()["error"]["message"] == "format must be one of rle, png, got 3"
    png_only = {**h, "Accept": "image/png"}
    r = httpx.post(url, headers=png_only, files=upload(("a.jpg", data), ("b.jpg", data)))
    assert r.status_code == 406 and r.json()["error"]["code"] == "not_acceptable"
    r = httpx.post(url, headers=png_only, params={"format": "rle"}, files=upload(("a.jpg", data)))
    assert r.status_code == 406
    # every image bad: the first error's status, per image in JSON (also when a PNG was asked for)
    r = httpx.post(url, headers=png_only, files=upload(("broken.jpg", data[: len(data) // 3])))
    assert r.status_code == 400 and r.json()["results"][0]["error"]["code"] == "corrupt_image"
    r = httpx.post(url, headers=h, files=upload(("notes.png", b"text")))
    assert r.status_code == 415
    r = httpx.post(url, headers=h, json={"images": []})
    assert r.status_code == 400
    assert httpx.post(url, files=upload(("a.jpg", data))).status_code == 401


def test_segment_is_documented_in_openapi(live_server):
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    op = spec["paths"]["/v1/segment"]["post"]
    body = op["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["format"]["enum"] == ["rle", "png"]
    assert set(op["responses"]["200"]["content"]) == {"application/json", "image/png"}
    assert {"400", "404", "406", "413", "415", "503", "504"} <= set(op["responses"])
    # the example RLEs are real: pycocotools' strings for the 3x2 mask they describe
    example = op["responses"]["200"]["content"]["application/json"]["examples"]["rle"]["value"]["results"][0]
    from visor.types.segmentation import SegmentationMask

    mask = SegmentationMask.from_dict(example["segmentation"])
    assert mask.mask.tolist() == [[0, 6, 6], [0, 6, 6]] and mask.areas == example["areas"]


def test_annotate_segmentation_in_the_service(live_server, coco, segmenter):
    from visor.io import bounded_copy, open_image

    r = httpx.post(f"{live_server.url}/v1/annotate", headers=live_server.headers, timeout=60,
                   params={"features": "segmentation,labels"}, files=upload((BUS, (coco / BUS).read_bytes())))
    assert r.status_code == 200, r.text
    doc = r.json()["results"][0]
    expected = segmenter.predict(bounded_copy(open_image(coco / BUS), max_side=512)).to_dict()
    assert doc["segmentation"] == expected and (expected["width"], expected["height"]) == (512, 342)
    assert [s["label"] for s in expected["segments"]] == ["background", "bus"]
    # opt-in: not among the default features
    assert "segmentation" not in live_server.app.state.service.default_features()


# --------------------------------------------------------------------------- missing weights: 503, not 500


def _uncached_segmenter(folder: Path) -> Path:
    """A segmentation card whose weights are a URL that is not in the cache (tests are offline)."""
    from visor.models import ModelCard, Preprocess, WeightsSource

    folder.mkdir(parents=True)
    ModelCard(name="seg-elsewhere", task="segmentation", architecture="deeplabv3_mobilenetv2",
              weights=WeightsSource(kind="url", location="https://example.invalid/seg.onnx", sha256="ab" * 32,
                                    format="onnx"),
              labels=("background", "thing"),
              preprocess=Preprocess(input_size=(64, 64), resize="squash", interpolation="bilinear",
                                    mean=(0.5,) * 3, std=(0.5,) * 3, layout="nhwc"),
              output_format="segmentation_logits", license="Apache-2.0").save(folder)
    return folder


def test_a_segmenter_without_cached_weights_answers_503_and_the_rest_serves(tmp_path, visor_cache, coco):
    from visor.errors import WeightsNotCached
    from visor.models import load

    assert os.environ.get("VISOR_OFFLINE") == "1"
    folder = _uncached_segmenter(tmp_path / "seg")
    server = start_server(tmp_path / "srv", detector="none", segmenter=str(folder))
    try:
        h, url = server.headers, server.url
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["status"] == "ready" and ready["models"] == ["efficientnet_lite0"]
        data = (coco / BUS).read_bytes()
        r = httpx.post(f"{url}/v1/segment", headers=h, files=upload(("bus.jpg", data)))
        assert r.status_code == 503 and r.headers["retry-after"] == "60"
        error = r.json()["error"]
        assert error["code"] == "model_unavailable" and error["type"] == "ModelUnavailable"
        with pytest.raises(WeightsNotCached) as cause:  # what loading it says: where the file must go
            load(folder)
        assert "downloads are off (VISOR_OFFLINE is set)" in str(cause.value)
        assert error["message"] == (f"the segmenter {folder} is not loaded: {cause.value}; then restart the service "
                                    "(or start it with --segmenter none)")
        r = httpx.post(f"{url}/v1/annotate", headers=h, params={"features": "segmentation,properties"},
                       files=upload(("bus.jpg", data)))
        doc = r.json()["results"][0]
        assert r.status_code == 200 and doc["segmentation"]["error"]["code"] == "model_unavailable"
        assert doc["properties"]["type"] == "properties"
        r = httpx.post(f"{url}/v1/classify", headers=h, files=upload(("bus.jpg", data)))
        assert r.status_code == 200 and r.json()["results"][0]["classifications"]["predictions"][0]["label"] == \
            "school bus"
        assert server.app.state.service.manager.unavailable() == {"segmentation": error["message"]}
        assert ready["unavailable"] == {"segmentation": error["message"]}
    finally:
        server.stop()


def test_serve_settings_segmenter():
    from visor.errors import ConfigError
    from visor.serve.settings import ServeSettings

    assert ServeSettings().segmenter == "deeplabv3_voc"
    assert ServeSettings(segmenter="none").segmenter is None and ServeSettings(segmenter="None").segmenter is None
    with pytest.raises(ConfigError, match="segmenter must name a model, or be 'none' for no segmenter"):
        ServeSettings(segmenter=" ")
    assert json.loads(ServeSettings(segmenter=None).to_json())["segmenter"] is None
