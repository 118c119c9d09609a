"""Shared fixtures: the shared data folder, an isolated model cache, a loaded classifier."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skip_or_fail import skip_or_fail  # tests/skip_or_fail.py
from zoo import SHARED_MODELS, ZOO_FILES, require_models  # tests/zoo.py (several conftest.py exist)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VISOR_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLE = REPO / "assets" / "bus.jpg"


def require_data(name: str) -> Path:
    """A folder of ../shared/data. Missing: a failure in CI, a skip elsewhere."""
    path = SHARED_DATA / name
    if not path.is_dir():
        skip_or_fail(f"shared data {path} is missing (set VISOR_SHARED_DATA or check out ../shared)")
    return path


@pytest.fixture(scope="session")
def shared_data():
    """``shared_data("imagenette-dev")`` is that folder of ../shared/data (see require_data)."""
    return require_data


# ------------------------------------------------------------------------------ the model cache, offline

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class NetworkRefused(RuntimeError):
    """A test tried to reach a host other than this machine."""


def _loopback_only(urlopen):
    """``urllib.request.urlopen`` that refuses every host but this machine's (loopback test servers stay usable)."""
    import urllib.parse

    def guarded(url, *args, **kwargs):
        full = url if isinstance(url, str) else url.full_url
        if urllib.parse.urlsplit(full).hostname not in _LOOPBACK:
            raise NetworkRefused(f"tests never touch the network: urlopen({full!r}) refused")
        return urlopen(url, *args, **kwargs)

    return guarded


@pytest.fixture(scope="session", autouse=True)
def visor_cache(tmp_path_factory: pytest.TempPathFactory):
    """Every test session exports models into its own cache, never the user's, and downloads nothing:
    ``VISOR_OFFLINE=1`` (subprocesses inherit it with ``VISOR_CACHE``) and urllib refuses any host but
    loopback. The zoo's weights found in ../shared/models are imported into the cache with
    ``weights.import_file`` (sha256 checked), so ``visor.load("yolox_nano")`` works here and in subprocesses;
    tests that need them ask for ``zoo_cache`` (which fails in CI, and skips elsewhere, when they are missing)."""
    import urllib.request

    from visor.models import weights
    from visor.models.registry import builtin

    cache = tmp_path_factory.mktemp("visor-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISOR_CACHE", str(cache))
        mp.setenv(weights.OFFLINE_ENV, "1")
        mp.setattr(urllib.request, "urlopen", _loopback_only(urllib.request.urlopen))
        registry = builtin()
        for name, rel in ZOO_FILES.items():
            if (SHARED_MODELS / rel).is_file():
                weights.import_file(registry.get(name), SHARED_MODELS / rel, cache)
        yield cache


@pytest.fixture(scope="session")
def zoo_cache(visor_cache) -> Path:
    """The session's cache holding the zoo's weights (yolox_nano, yunet, deeplabv3_voc) imported from
    ../shared/models; fails in CI (skips elsewhere) when they are missing."""
    from visor.models import weights
    from visor.models.registry import builtin

    require_models()
    registry = builtin()
    assert all(weights.is_present(registry.get(n).weights, cache=visor_cache) for n in ZOO_FILES)
    return visor_cache


@pytest.fixture(scope="session")
def yolox_nano(zoo_cache):
    """The pretrained YOLOX-Nano COCO detector, loaded once per session."""
    import visor

    return visor.load("yolox_nano")


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


@pytest.fixture(scope="session")
def imagenette_rows(classifier, shared_data) -> list[dict[str, str]]:
    """One row per imagenette-dev image (train then val, classes sorted): absolute path, the
    default model's ImageNet-1k label name, and split."""
    root = shared_data("imagenette-dev")
    classes = json.loads((root / "classes.json").read_text())
    rows = []
    for split in ("train", "val"):
        for synset, info in sorted(classes.items()):
            for f in sorted((root / split / synset).iterdir()):
                rows.append({"path": str(f), "label": classifier.labels[info["imagenet_index"]], "split": split})
    return rows


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def write_manifest():
    """``write_manifest(path, rows)``: rows (dicts with path, label, split, metadata...) as a CSV manifest."""
    return _write_manifest


@pytest.fixture(scope="session")
def imagenette_manifest(imagenette_rows, tmp_path_factory) -> Path:
    """imagenette-dev as a CSV manifest (path,label,split) the default classifier can be evaluated on."""
    return _write_manifest(tmp_path_factory.mktemp("imagenette") / "manifest.csv", imagenette_rows)


#: How the drift and subgroup tests alter images: PIL brightness factor, Gaussian blur radius.
DARKEN_FACTOR = 0.06
BLUR_RADIUS = 3.0


@pytest.fixture(scope="session")
def imagenette_variant(imagenette_rows, tmp_path_factory):
    """``imagenette_variant("dark" | "blur")``: the val rows with their images darkened
    (brightness x0.06) or blurred (Gaussian, radius 3), written once per session as JPEG q95."""
    from PIL import Image, ImageEnhance, ImageFilter

    made: dict[str, list[dict[str, str]]] = {}

    def variant(kind: str) -> list[dict[str, str]]:
        if kind not in made:
            folder = tmp_path_factory.mktemp(f"imagenette-{kind}")
            rows = []
            for row in (r for r in imagenette_rows if r["split"] == "val"):
                with Image.open(row["path"]) as im:
                    im = im.convert("RGB")
                    if kind == "dark":
                        im = ImageEnhance.Brightness(im).enhance(DARKEN_FACTOR)
                    elif kind == "blur":
                        im = im.filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
                    else:
                        raise ValueError(kind)
                    out = folder / f"{Path(row['path']).stem}.jpg"
                    im.save(out, quality=95)
                rows.append({**row, "path": str(out)})
            made[kind] = rows
        return made[kind]

    return variant


# ------------------------------------------------------------------------------ a real browser

#: Debian's chromium (``VISOR_CHROMIUM`` overrides); Playwright drives it and never downloads one.
CHROMIUM = Path(os.environ.get("VISOR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    """Skip (or fail when ``CI=true``) without the browser or the playwright package."""
    missing = None
    if not CHROMIUM.is_file():
        missing = (f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) or set "
                   "VISOR_CHROMIUM; these tests need a real browser")
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = ("the playwright Python package is not installed (pip install playwright; no browser "
                       "download needed, the tests use Debian's chromium)")
    skip_or_fail(missing)


@pytest.fixture(scope="session")
def needs_chromium() -> None:
    """Skip (or fail in CI) when there is no browser to drive."""
    require_chromium()


@pytest.fixture(scope="session")
def chromium(needs_chromium):
    """A headless chromium launched through Playwright, shared by the session's browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# ------------------------------------------------------------------------------ a trained detector


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """The synthetic shapes detection set (tests/synthetic_shapes.py): 200 train, 40 val images of 128 px."""
    from synthetic_shapes import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=200, n_val=40, size=128)


@pytest.fixture(scope="session")
def trained(shapes, tmp_path_factory):
    """A detector trained on ``shapes`` for 6 epochs (about 45 s on 2 cores), shared by the session."""
    from visor.train.detector import DetectTrainConfig, train_detector

    config = DetectTrainConfig(epochs=6, img_size=128, batch_size=16, augment=("hflip",), patience=0)
    return train_detector(shapes, tmp_path_factory.mktemp("runs") / "shapes", config, progress=False)
