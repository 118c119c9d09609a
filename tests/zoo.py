"""The zoo's weights in ../shared/models, for the tests: where they are and a guard for when they are missing.

A module of its own (not conftest.py, of which there are several) so that tests can import it by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = Path(os.environ.get("VISOR_SHARED_MODELS", REPO.parent / "shared" / "models"))
#: The zoo's weights in ../shared/models by registry name: byte-identical to the files at the cards' URLs.
ZOO_FILES = {
    "yolox_nano": "detection/yolox_nano.onnx",
    "yunet": "faces/yunet_n_dynamic.onnx",
    "deeplabv3_voc": "segmentation/deeplabv3_mnv2_voc_257.onnx",
}


def require_models(*names: str) -> dict[str, Path]:
    """The ../shared/models files of the zoo models ``names`` (default: all of ZOO_FILES), by name.
    Missing: a failure in CI, a skip elsewhere."""
    files = {n: SHARED_MODELS / ZOO_FILES[n] for n in names or ZOO_FILES}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        msg = (f"shared model files missing: {', '.join(missing)} (set VISOR_SHARED_MODELS or check out ../shared; "
               "tests never download weights)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return files
