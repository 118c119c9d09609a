"""Shared fixtures: the shared data folder, an isolated model cache, a loaded classifier."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VISOR_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLE = REPO / "assets" / "bus.jpg"


def require_data(name: str) -> Path:
    """A folder of ../shared/data. Missing: a failure in CI, a skip elsewhere."""
    path = SHARED_DATA / name
    if not path.is_dir():
        msg = f"shared data {path} is missing (set VISOR_SHARED_DATA or check out ../shared)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_data():
    """``shared_data("imagenette-dev")`` is that folder of ../shared/data (see require_data)."""
    return require_data


@pytest.fixture(scope="session", autouse=True)
def visor_cache(tmp_path_factory: pytest.TempPathFactory):
    """Every test session exports models into its own cache, never the user's."""
    cache = tmp_path_factory.mktemp("visor-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISOR_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def classifier(visor_cache):
    import visor

    return visor.load("efficientnet_lite0")


@pytest.fixture(scope="session")
def imagenette() -> list[tuple[Path, int]]:
    """All 450 imagenette-dev images (train and val) with their ImageNet-1k class ids."""
    root = require_data("imagenette-dev")
    classes = json.loads((root / "classes.json").read_text())
    items = []
    for split in ("train", "val"):
        for synset, info in sorted(classes.items()):
            for f in sorted((root / split / synset).iterdir()):
                items.append((f, info["imagenet_index"]))
    return items
