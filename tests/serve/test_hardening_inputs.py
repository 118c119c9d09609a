"""No request body makes the service answer 5xx: the bodies of the hardening issue verbatim, the
strict option and base64 rules, the API key checked before the body, and a bounded,
derandomized property-based test over every JSON and multipart route."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visor.errors import InvalidInput
from visor.serve.cloudvision import CloudVisionRequestError, annotate_images, load_body
from visor.serve.inputs import (
    MAX_JSON_DEPTH,
    decode_base64,
    float_option,
    int_option,
    list_option,
    load_json,
    strict_b64decode,
)


def _png(size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
PNG_B64 = base64.b64encode(PNG).decode()
DEEP = "[" * 100000 + "]" * 100000
ONES = "1" * 5000

# --------------------------------------------------------------------------- the loader, without a server


@pytest.mark.parametrize(("raw", "message"), [
    (DEEP, f"arrays and objects nest more than {MAX_JSON_DEPTH} deep"),
    ('{"images":[],"top_k":' + ONES + "}", "has 5000 digits; at most 20 are allowed"),
    ('{"images":[],"top_k":1e999}', "the number 1e999 is too long or out of range"),
    ('{"a":[1e400]}', "the number 1e400 is too long or out of range"),
    ('{"a":NaN}', "NaN is not a JSON value"),
    ('{"a":-Infinity}', "-Infinity is not a JSON value"),
    ('{"images":[{"content":"AA==","name":"\\ud800"}]}', "lone surrogate"),
    ('{"\\udfff":1}', "lone surrogate"),
    ("{not json", "Expecting property name enclosed in double quotes"),
    (b"\xff\xfe\xfa", "codec can't decode"),
])
def test_load_json_refuses_with_a_typed_error(raw, message):
    with pytest.raises(InvalidInput) as e:
        load_json(raw)
    assert str(e.value).startswith("the body is not valid JSON") and message in str(e.value)
    with pytest.raises(CloudVisionRequestError) as e:
        load_body(raw)
    assert str(e.value).startswith("Invalid JSON payload received.") and message in str(e.value)


def test_load_json_keeps_what_json_allows():
    ok = ('{"a":"\\ud83d\\ude00","b":-12345678901234567890,"c":1.5e300,"d":"[[[[' + "[" * 100 + '","e":[[[1]]]}')
    assert load_json(ok) == {"a": "\U0001f600", "b": -12345678901234567890, "c": 1.5e300, "d": "[[[[" + "[" * 100,
                             "e": [[[1]]]}
    assert load_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(InvalidInput, match="nest more than"):
        load_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert load_json('{"x": [1, 2]}'.encode("utf-16")) == {"x": [1, 2]}
    assert load_json(b"\xef\xbb\xbf[1]") == [1]
    assert load_json(b"") is None and load_json(b" \n") is None


def test_base64_is_strict():
    assert decode_base64(PNG_B64, "a") == PNG
    urlsafe = base64.urlsafe_b64encode(b"\xfb\xff\xfe" * 10).decode()
    assert "-" in urlsafe or "_" in urlsafe
    assert decode_base64(urlsafe, "a") == b"\xfb\xff\xfe" * 10
    assert decode_base64(PNG_B64.rstrip("="), "a") == PNG  # padding optional
    assert decode_base64("\n".join(PNG_B64[i:i + 76] for i in range(0, len(PNG_B64), 76)), "a") == PNG
    for bad in (PNG_B64 + "!!", "data:image/png;base64," + PNG_B64, "ab*d", "A"):
        with pytest.raises(InvalidInput, match="'content' is not valid base64"):
            decode_base64(bad, "a")
    assert strict_b64decode("YWJj") == b"abc"


def test_int_and_float_options_are_strict():
    assert int_option({"top_k": 7}, "top_k", 5, 1, 1000) == 7
    assert int_option({"top_k": " 7 "}, "top_k", 5, 1, 1000) == 7  # query string and form fields
    assert int_option({}, "top_k", 5, 1, 1000) == 5
    for bad in (True, False, 2.9, 3.0, "2.9", "", None, [3], ONES):
        with pytest.raises(InvalidInput, match="top_k must be a whole number"):
            int_option({"top_k": bad}, "top_k", 5, 1, 1000)
    for bad in (0, 1001, 10**19, "-1"):
        with pytest.raises(InvalidInput, match="top_k must be between 1 and 1000"):
            int_option({"top_k": bad}, "top_k", 5, 1, 1000)
    assert float_option({"conf": 1}, "conf", 0.25, 0, 1) == 1.0
    assert float_option({"conf": "0.5"}, "conf", 0.25, 0, 1) == 0.5
    for bad in (True, "nan", "x", None, "1" * 100):
        with pytest.raises(InvalidInput, match="conf must be a number"):
            float_option({"conf": bad}, "conf", 0.25, 0, 1)
    for bad in (1.5, "inf", 10**20):
        with pytest.raises(InvalidInput, match="conf must be between 0 and 1"):
            float_option({"conf": bad}, "conf", 0.25, 0, 1)


def test_an_empty_features_list_is_refused():
    assert list_option({}, "features") is None
    assert list_option({"features": "labels, text"}, "features") == ["labels", "text"]
    for empty in ("", " , ", [], [""]):
        with pytest.raises(InvalidInput, match="features is empty"):
            list_option({"features": empty}, "features")


def _cv_run(data, features, options):
    return {"width": 8, "height": 8, "labels": {"type": "classifications", "predictions": [
        {"class_id": i, "label": f"x{i}", "confidence": 0.5} for i in range(3)]},
            "crop_hints": {"hints": []}}


def _cv(feature: dict, context: dict | None = None) -> dict:
    return {"requests": [{"image": {"content": PNG_B64}, "features": [feature], "imageContext": context or {}}]}


def test_cloud_vision_numbers_are_bounded():
    with pytest.raises(CloudVisionRequestError, match="maxResults must be an integer"):
        annotate_images(_cv({"type": "LABEL_DETECTION", "maxResults": ONES}), _cv_run, int_enums=False,
                        has_detector=False)
    for big in (2**31, 1e300, "99999999999"):
        with pytest.raises(CloudVisionRequestError, match="maxResults is out of range for an int32"):
            annotate_images(_cv({"type": "LABEL_DETECTION", "maxResults": big}), _cv_run, int_enums=False,
                            has_detector=False)
    out = annotate_images(_cv({"type": ONES}), _cv_run, int_enums=False, has_detector=False)
    assert out == {"responses": [{"error": {"code": 3, "message": "invalid feature type: '"
                                            + "1" * 36 + "..."}}]}
    out = annotate_images(_cv({"type": "LABEL_DETECTION", "maxResults": "2"}), _cv_run, int_enums=False,
                          has_detector=False)
    assert len(out["responses"][0]["labelAnnotations"]) == 2
    body = json.dumps(_cv({"type": "CROP_HINTS"}, {"cropHintsParams": {"aspectRatios": [1]}})).replace("[1]", "[1e400]")
    with pytest.raises(CloudVisionRequestError, match="1e400 is too long or out of range"):
        load_body(body)
    bad_b64 = _cv({"type": "LABEL_DETECTION"})
    bad_b64["requests"][0]["image"]["content"] = PNG_B64 + "!!"
    out = annotate_images(bad_b64, _cv_run, int_enums=False, has_detector=False)
    assert out == {"responses": [{"error": {"code": 3, "message": "image.content is not valid base64"}}]}


# --------------------------------------------------------------------------- over HTTP


def _typed(error: object) -> bool:
    return isinstance(error, dict) and all(isinstance(error.get(k), str) for k in ("type", "code", "message"))


def _is_typed_error(path: str, response: httpx.Response) -> bool:
    """The service's error body, Google's on the Cloud Vision route, or per-image results that all failed,
    each with a typed error (the status is then the first error's)."""
    try:
        body = response.json()
        if isinstance(body.get("results"), list) and "error" not in body:
            return bool(body["results"]) and all(_typed(r.get("error")) for r in body["results"])
        error = body["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    if path.endswith("images:annotate"):
        return (error.get("code") == response.status_code and isinstance(error.get("message"), str)
                and isinstance(error.get("status"), str))
    return _typed(error)


def _image_body(name: str = '"a.png"', top_k: str = "3", content: str | None = None) -> str:
    content = content if content is not None else json.dumps(PNG_B64)
    return '{"images":[{"content":' + content + ',"name":' + name + '}],"top_k":' + top_k + "}"


def _cv_body(feature: str, context: str = "{}") -> str:
    return ('{"requests":[{"image":{"content":"' + PNG_B64 + '"},"features":[' + feature + '],"imageContext":'
            + context + "}]}")


#: The issue's bodies, verbatim: (route, body, message in the 400's error).
ISSUE_CASES = [
    ("/v1/classify", DEEP, "nest more than 64 deep"),
    ("/v1/images:annotate", DEEP, "nest more than 64 deep"),
    ("/v1/classify", '{"images":[],"top_k":' + ONES + "}", "has 5000 digits"),
    ("/v1/classify", _image_body(top_k="1e999"), "1e999 is too long or out of range"),
    ("/v1/annotate", _image_body(top_k="1e999"), "1e999 is too long or out of range"),
    ("/v1/classify", _image_body(name='"\\ud800"'), "lone surrogate"),
    ("/v1/images:annotate", _cv_body('{"type":"LABEL_DETECTION","maxResults":"' + ONES + '"}'),
     "maxResults must be an integer"),
    ("/v1/images:annotate", _cv_body('{"type":"CROP_HINTS"}', '{"cropHintsParams":{"aspectRatios":[1e400]}}'),
     "1e400 is too long or out of range"),
    ("/v1/classify", _image_body(top_k="true"), "top_k must be a whole number, got True"),
    ("/v1/classify", _image_body(top_k="2.9"), "top_k must be a whole number, got 2.9"),
    ("/v1/classify", _image_body(content=json.dumps(PNG_B64 + "!!")), "'content' is not valid base64"),
    ("/v1/annotate", '{"images":[{"content":"' + PNG_B64 + '"}],"features":""}', "features is empty"),
    ("/v1/collections", '{"name": 5}', "body.name: Input should be a valid string"),
    ("/v1/review/items/1", '{"action": "acept"}', "body.action: Input should be 'accept', 'correct' or 'reject'"),
    ("/v1/review/items/1", "[]", "the body must be a JSON object, got list"),
]


@pytest.mark.parametrize(("path", "body", "message"), ISSUE_CASES, ids=[f"{p}-{i}" for i, (p, *_)
                                                                         in enumerate(ISSUE_CASES)])
def test_issue_bodies_get_a_typed_400(live_server, path, body, message):
    before = httpx.get(f"{live_server.url}/v1/review/items", headers=live_server.headers).json()["counts"]["all"]
    r = httpx.post(f"{live_server.url}{path}", content=body.encode(), timeout=60,
                   headers={**live_server.headers, "Content-Type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    assert _is_typed_error(path, r) and message in r.json()["error"]["message"], r.text[:300]
    after = httpx.get(f"{live_server.url}/v1/review/items", headers=live_server.headers).json()["counts"]["all"]
    assert after == before  # a refused request queues nothing for review


def test_a_cloud_vision_type_of_5000_digits_is_that_images_error(live_server):
    r = httpx.post(f"{live_server.url}/v1/images:annotate", headers=live_server.headers,
                   content=_cv_body('{"type":"' + ONES + '"}').encode())
    assert r.status_code == 200
    assert r.json() == {"responses": [{"error": {"code": 3, "message": "invalid feature type: '" + "1" * 36
                                                 + "..."}}]}


@pytest.mark.parametrize("path", ["/v1/collections", "/v1/review/items/1", "/v1/classify", "/v1/images:annotate",
                                  "/v1/collections/staff/people/ada", "/v1/collections/staff/identify"])
@pytest.mark.parametrize("body", ["{not json", DEEP, '{"name": "\\ud800"}'])
def test_the_key_is_checked_before_the_body(live_server, path, body):
    r = httpx.post(f"{live_server.url}{path}", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and _is_typed_error(path, r), r.text[:300]
    r = httpx.post(f"{live_server.url}{path}", content=body.encode(),
                   headers={"Content-Type": "application/json", "X-API-Key": "visor_wrong"})
    assert r.status_code == 401


def test_valid_json_bodies_still_work(live_server):
    h = live_server.headers
    r = httpx.post(f"{live_server.url}/v1/classify", headers=h,
                   json={"images": [{"content": base64.urlsafe_b64encode(PNG).decode().rstrip("="),
                                     "name": "r\u00e9d \U0001f600.png"}], "top_k": "2"})
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["image"] == "r\u00e9d \U0001f600.png" and len(result["classifications"]["predictions"]) == 2
    r = httpx.post(f"{live_server.url}/v1/collections", headers=h, json={"name": "hardening-ok"})
    assert r.status_code == 201 and r.json() == {"name": "hardening-ok", "people": []}
    item = result["review_id"]
    r = httpx.post(f"{live_server.url}/v1/review/items/{item}", headers=h, json={"action": "reject"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"


# --------------------------------------------------------------------------- property-based: every route

#: Every route that reads a JSON or multipart body. Search answers 404 without an index (the shared server has
#: none), after reading the body; detect runs the default detector.
BODY_ROUTES = ["/v1/classify", "/v1/detect", "/v1/annotate", "/v1/search", "/v1/images:annotate",
               "/v1/collections", "/v1/collections/fuzz/people/ada", "/v1/collections/fuzz/identify",
               "/v1/review/items/1"]

#: JSON texts that json.loads takes but that used to crash a route, and other awkward values.
NASTY = ["1e999", "-1e999", "1e400", ONES, "-" + ONES, "NaN", "Infinity", '"\\ud800"', '"\\udfff\\ud800"',
         "[" * 200 + "]" * 200, "true", "false", "null", "2.9", "0", "-1", "1e300", "18446744073709551616", '""',
         '"!!"', '"' + ONES + '"', "{}", "[]", json.dumps(PNG_B64), json.dumps(PNG_B64 + "!!"),
         json.dumps("data:image/png;base64," + PNG_B64), '"labels"', '"accept"', '"correct"', '"LABEL_DETECTION"',
         '"CROP_HINTS"', '"FACE_DETECTION"', '"1"', '"-5"', "[1e400]", "[0, -1]", '"a\\u0000b"', '"\\u00e9"']
KEYS = ["images", "content", "name", "top_k", "features", "k", "conf", "iou", "max_det", "requests", "image",
        "type", "maxResults", "imageContext", "cropHintsParams", "aspectRatios", "action", "label", "source"]

_scalar = st.one_of(st.sampled_from(NASTY), st.integers(-(2**70), 2**70).map(str),
                    st.floats(allow_nan=False, allow_infinity=False).map(repr),
                    st.text(max_size=12).map(json.dumps))


def _obj(children):
    return st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), children, max_size=4).map(
        lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}")


def _fill(template: str, *values: str) -> str:
    """``template`` with each ``@`` replaced by the next of ``values`` (JSON texts)."""
    parts = template.split("@")
    return "".join(p + v for p, v in zip(parts, (*values, ""), strict=True))


_value = st.recursive(_scalar, lambda children: st.lists(children, max_size=3).map(lambda xs: "[" + ",".join(xs)
                                                                                    + "]") | _obj(children),
                      max_leaves=10)
_shaped = st.one_of(
    st.builds(lambda c, n, k, f: _fill('{"images":[{"content":@,"name":@}],"top_k":@,"features":@,"k":@,"conf":@}',
                                       c, n, k, f, k, k), _value, _value, _value, _value),
    st.builds(lambda t, m, r, c: _fill('{"requests":[{"image":{"content":@},"features":[{"type":@,"maxResults":@}],'
                                       '"imageContext":{"cropHintsParams":{"aspectRatios":@}}}]}', c, t, m, r),
              _value, _value, _value, st.sampled_from([json.dumps(PNG_B64)]) | _value),
    st.builds(lambda a, b: _fill('{"action":@,"label":@,"name":@}', a, b, b), _value, _value),
)
JSON_BODIES = st.one_of(_shaped, _obj(_value), _value, st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
FIELD_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
MULTIPART = st.fixed_dictionaries({
    "files": st.lists(st.tuples(st.sampled_from(["images", "other"]), FIELD_TEXT,
                                st.sampled_from([PNG, b"", b"\xff\xd8\xff", b"GIF8", b"not an image"])),
                      max_size=3),
    "data": st.dictionaries(st.sampled_from(["top_k", "features", "k", "conf", "iou", "max_det", "x"]),
                            st.sampled_from(NASTY) | FIELD_TEXT, max_size=4),
})


def _check(path: str, response: httpx.Response) -> None:
    assert response.status_code < 500, (path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert _is_typed_error(path, response), (path, response.status_code, response.text[:500])


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_no_json_body_gives_a_server_error(live_server, path):
    url = f"{live_server.url}{path}"
    headers = {**live_server.headers, "Content-Type": "application/json"}
    with httpx.Client(timeout=60) as client:
        for body in [DEEP, *NASTY]:
            _check(path, client.post(url, content=body.encode(), headers=headers))

        @given(body=JSON_BODIES)
        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(body: str) -> None:
            _check(path, client.post(url, content=body.encode("utf-8", "surrogatepass"), headers=headers))

        run()


@pytest.mark.parametrize("path", [p for p in BODY_ROUTES if p not in ("/v1/collections", "/v1/review/items/1",
                                                                      "/v1/images:annotate")])
def test_no_multipart_body_gives_a_server_error(live_server, path):
    url = f"{live_server.url}{path}"
    with httpx.Client(timeout=60, headers=live_server.headers) as client:

        @given(form=MULTIPART)
        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(form: dict) -> None:
            files = [(field, (name, data, "application/octet-stream")) for field, name, data in form["files"]]
            if not files:  # httpx sends a form without files as urlencoded: that is the 415 case
                files = [("other", ("x.txt", b"x", "text/plain"))]
            _check(path, client.post(url, files=files, data=form["data"]))

        run()
