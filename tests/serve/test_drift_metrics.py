"""visor serve --drift-profile: /metrics compares recent classify predictions with the profile."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import start_server
from visor.errors import ConfigError
from visor.monitor import DriftProfile
from visor.monitor.collect import build_profile
from visor.monitor.drift import histogram, psi


def _gauges(text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(visor_drift\S*) (\S+)$", text, re.M)}


@pytest.fixture(scope="module")
def val_profile(classifier, imagenette_rows, tmp_path_factory):
    val = [r["path"] for r in imagenette_rows if r["split"] == "val"]
    return build_profile(classifier, val).save(tmp_path_factory.mktemp("drift") / "val.safetensors")


def test_metrics_report_drift_of_recent_predictions(tmp_path, val_profile, imagenette_variant, classifier):
    server = start_server(tmp_path, drift_profile=str(val_profile), drift_window=60, max_batch=8)
    try:
        metrics = httpx.get(f"{server.url}/metrics", headers=server.headers).text
        assert "visor_drift" not in metrics  # nothing to compare yet
        assert httpx.get(f"{server.url}/v1/drift", headers=server.headers).json()["report"] is None
        blurred = [r["path"] for r in imagenette_variant("blur")][:64]
        # The first 4 images one request each: the window keeps the last 60 added, and the images of one request
        # are decoded in parallel and join the model's batches in the order they finish, so the 4 that fall out
        # are sent alone (sent 8 at a time, 2 runs of 42 here and one on CI kept another 60).
        top1 = []  # the server's own top-1 confidence of each image, in order
        for i, j in [(0, 1), (1, 2), (2, 3), (3, 4)] + [(k, min(k + 8, 64)) for k in range(4, 64, 8)]:
            files = [("images", (p, Path(p).read_bytes(), "image/jpeg")) for p in blurred[i:j]]
            r = httpx.post(f"{server.url}/v1/classify", headers=server.headers, files=files, timeout=60)
            assert r.status_code == 200
            top1 += [res["classifications"]["predictions"][0]["confidence"] for res in r.json()["results"]]
            # the answers are the classifier's own (the drift graph gives the same probabilities)
            got = r.json()["results"][0]["classifications"]["predictions"]
            want = classifier.classify(blurred[i]).to_dict()["predictions"]
            assert [p["label"] for p in got] == [p["label"] for p in want]
            np.testing.assert_allclose([p["confidence"] for p in got], [p["confidence"] for p in want], atol=1e-5)
        g = _gauges(httpx.get(f"{server.url}/metrics", headers=server.headers).text)
        assert g["visor_drift_window_images"] == 60  # the last 60 of 64
        assert g["visor_drift_alert"] == 1.0
        assert g['visor_drift_psi{signal="sharpness"}'] > 1.0
        assert {'visor_drift_psi{signal="confidence"}', 'visor_drift_psi{signal="class_mix"}',
                'visor_drift_psi{signal="brightness"}', 'visor_drift_psi{signal="contrast"}',
                "visor_drift_embedding_shift", "visor_drift_embedding_p_value"} <= set(g)
        # the same numbers as the library's comparison of those 60 images
        got = DriftProfile.load(val_profile)
        from visor.monitor.collect import collect

        c = collect(classifier, blurred[4:])
        expected = got.compare(c.probs, c.embeddings, c.inputs)
        assert g['visor_drift_psi{signal="sharpness"}'] == pytest.approx(expected.psi_inputs["sharpness"], rel=1e-6)
        # Confidence PSI counts top-1 confidences in the profile's decile bins. The server's batches and the
        # library's differ in the last bits of ONNX Runtime's results on some CPUs, which can move an image across
        # a bin edge, so the server's figure is checked against its own top-1 confidences (6 decimals in JSON:
        # where one lies within 1e-6 of an edge either bin is right) ...
        assert len(top1) == 64
        conf = np.asarray(top1[4:], np.float64)
        edges, ref = got.confidence_edges, got.confidence_counts
        candidates = {psi(ref, histogram(conf + d, edges)) for d in (-1e-6, 0.0, 1e-6)}
        assert any(g['visor_drift_psi{signal="confidence"}'] == pytest.approx(v, abs=1e-9) for v in candidates), \
            (g['visor_drift_psi{signal="confidence"}'], candidates)
        # ... and the library's comparison of the same images to within one image moving to the next bin
        assert g['visor_drift_psi{signal="confidence"}'] == pytest.approx(expected.psi_confidence, abs=0.1)
        # the JSON route gives the same report
        d = httpx.get(f"{server.url}/v1/drift", headers=server.headers).json()
        assert d["window"] == 60 and d["report"]["alert"] is True and d["report"]["n"] == 60
        assert d["report"]["psi_inputs"]["sharpness"] == pytest.approx(g['visor_drift_psi{signal="sharpness"}'])
        assert httpx.get(f"{server.url}/v1/drift").status_code == 401
    finally:
        server.stop()


def test_a_profile_of_another_model_is_refused(tmp_path, val_profile):
    from visor.serve.manager import ModelManager
    from visor.serve.settings import ServeSettings

    prof = DriftProfile.load(val_profile)
    other = DriftProfile.build(np.eye(3)[[0, 1, 2, 0]] * 0.9 + 0.03, model="tiny", labels=["a", "b", "c"])
    path = other.save(tmp_path / "other.safetensors")
    manager = ModelManager(ServeSettings(drift_profile=str(path), batch_calibration=False, detector=None))
    with pytest.raises(ConfigError, match="labels differ"):
        manager.load()
    assert prof.model == "efficientnet_lite0"


def test_drift_without_a_profile_is_404(live_server):
    r = httpx.get(f"{live_server.url}/v1/drift", headers=live_server.headers)
    assert r.status_code == 404 and "--drift-profile" in r.json()["error"]["message"]
