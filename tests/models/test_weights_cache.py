"""The weights cache: downloads land atomically with a deliberate mode, a bad download leaves nothing."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import urllib.request

import pytest

from visor.errors import WeightsIntegrityError
from visor.models import weights

DATA = b"\x00weights" * 1000


class _Response(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


@pytest.fixture
def served(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _Response(DATA))


def test_download_is_public_less_the_umask(tmp_path, served):
    old = os.umask(0o022)
    try:
        sha = hashlib.sha256(DATA).hexdigest()
        path = weights.download("https://example.org/m/model.onnx", sha, tmp_path, progress=False)
        assert path == tmp_path / sha / "model.onnx" and path.read_bytes() == DATA
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # not mkstemp's 0o600
        assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]
    finally:
        os.umask(old)


def test_a_mismatched_download_leaves_nothing(tmp_path, served):
    with pytest.raises(WeightsIntegrityError, match="sha256 mismatch"):
        weights.download("https://example.org/m/model.onnx", "0" * 64, tmp_path, progress=False)
    assert list((tmp_path / ("0" * 64)).iterdir()) == []
