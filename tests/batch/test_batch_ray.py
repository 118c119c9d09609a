"""``engine="ray"`` on a local Ray instance writes the same predictions as ``engine="local"``."""

from __future__ import annotations

import pytest
from batch_helpers import LIMIT_PIXELS

from visor.batch import iter_results, read_params, run_batch
from visor.io import ImageLimits

pytest.importorskip(
    "ray.data", reason="Ray is not installed (pip install 'visor-vision[ray]'); the ray engine is not tested"
)


@pytest.fixture(scope="module")
def dev_sample(imagenette) -> list[str]:
    """All 450 imagenette-dev images (train and val)."""
    return [str(p) for p, _ in imagenette]


def test_ray_engine_equals_local(tmp_path, dev_sample, image_folder):
    _, _, bad = image_folder
    inputs = [*dev_sample, *sorted(bad)]
    limits = ImageLimits(max_pixels=LIMIT_PIXELS)
    local = run_batch(inputs, out=tmp_path / "local.parquet", limits=limits, batch_size=16)
    ray = run_batch(inputs, out=tmp_path / "ray.parquet", engine="ray", workers=2, limits=limits, batch_size=16,
                    chunk_size=64)
    assert (ray.ok, ray.quarantined) == (local.ok, local.quarantined) == (len(dev_sample), len(bad))
    assert ray.engine == "ray" and read_params(tmp_path / "ray.parquet")["engine"] == "ray"
    by_path = {r["path"]: r for r in iter_results(tmp_path / "local.parquet")}
    rows = list(iter_results(tmp_path / "ray.parquet"))
    assert sorted(r["path"] for r in rows) == sorted(by_path)
    for r in rows:
        ref = by_path[r["path"]]
        assert (r["label"], r["class_id"], r["model"], r["model_sha256"]) == (
            ref["label"], ref["class_id"], ref["model"], ref["model_sha256"])
        classes = [p["class_id"] for p in r["result"]["predictions"]]
        assert classes == [p["class_id"] for p in ref["result"]["predictions"]]
        assert abs(r["confidence"] - ref["confidence"]) <= 1e-6
    local_q = {r["path"]: r["code"] for r in iter_results(tmp_path / "local.parquet", quarantine=True)}
    assert {r["path"]: r["code"] for r in iter_results(tmp_path / "ray.parquet", quarantine=True)} == local_q == bad

    # The ray engine resumes like the local one, and a local run can finish a ray output.
    again = run_batch(inputs, out=tmp_path / "ray.parquet", engine="local", limits=limits)
    assert (again.processed, again.skipped) == (0, len(inputs))
