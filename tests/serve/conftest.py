"""A live visor server on loopback (uvicorn in a thread) for the service tests."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from storage_backends import DATABASES, database_url  # tests/storage_backends.py

pytest.importorskip("fastapi", reason="the service tests need the 'serve' extra")


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh, empty service database's URL, once per backend: an SQLite file ``tmp_path/serve.db``, then a
    PostgreSQL database of its own (fails in CI, skips elsewhere, without ``VISOR_TEST_POSTGRES_URL``)."""
    with database_url(request.param, tmp_path) as url:
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    key: str
    db_url: str
    app: Any
    server: Any
    thread: threading.Thread
    home: Path
    key_name: str
    extra: dict = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def require_default_models(overrides: dict[str, Any]) -> None:
    """A server with the default detector (yolox_nano) or segmenter (deeplabv3_voc) needs their weights, imported
    into the session's cache from ../shared/models by tests/conftest.py: missing, a failure in CI and a skip
    elsewhere (never a download)."""
    from visor.models import weights
    from visor.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, builtin

    for role, default in (("detector", DEFAULT_DETECTOR), ("segmenter", DEFAULT_SEGMENTER)):
        if overrides.get(role, default) != default:
            continue
        if not weights.is_present(builtin().get(default).weights):
            msg = (f"the default {role}'s weights ({default}) are not in the test cache: check out ../shared "
                   "(tests/conftest.py imports ../shared/models)")
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(msg)
            pytest.skip(msg)


def start_server(tmp: Path, **overrides: Any) -> LiveServer:
    """Start a server with a fresh database and one API key; waits until /readyz says ready.

    The server runs the default models (efficientnet_lite0, the yolox_nano detector and the deeplabv3_voc
    segmenter) unless ``overrides`` name others (``detector="none"``: no detector)."""
    import httpx
    import uvicorn

    from visor.serve.app import create_app
    from visor.serve.db import ServiceDB
    from visor.serve.keys import KeyStore
    from visor.serve.settings import ServeSettings

    require_default_models(overrides)
    tmp.mkdir(parents=True, exist_ok=True)
    overrides.setdefault("batch_calibration", False)  # 2 s per start; tested on its own
    db_url = overrides.pop("db", f"sqlite:///{tmp / 'serve.db'}")
    db = ServiceDB(db_url)
    key_name = f"tests-{tmp.name}"
    _, key = KeyStore(db).create(key_name)
    db.close()
    port = free_port()
    settings = ServeSettings(host="127.0.0.1", port=port, db=db_url, faces_db=str(tmp / "faces.db"), **overrides)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code == 200:
                return LiveServer(url, key, db_url, app, server, thread, tmp, key_name)
            if r.json().get("status") == "failed":
                raise RuntimeError(f"server failed to load: {r.text}")
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.should_exit = True
    raise RuntimeError("the test server did not become ready within 120 s")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, visor_cache):
    """A server on loopback with the default classifier, detector and segmenter that queues every prediction for review
    (threshold 1.0).

    ``.url``, ``.key`` (an API key), ``.headers`` (``X-API-Key``), ``.db_url``.
    """
    server = start_server(tmp_path_factory.mktemp("serve"), review_threshold=1.0, preload=("classifier",))
    yield server
    server.stop()
