"""A core install (no PyTorch, no albumentations) classifies; what needs them says so in one message.

Each check runs in a fresh interpreter whose import system refuses ``torch``, ``torchvision`` and
``albumentations`` (a meta-path finder installed before anything else), so this test venv, which
has them, behaves like ``pip install visor-vision`` without the ``train`` extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "bus.jpg"
TRAIN_EXTRA = "pip install 'visor-vision[train]'"

#: Prepended to every script: refuse the train extra's packages, and remember who asked for them.
BLOCK = """
import importlib.abc, sys
ASKED = []
class _NoTrainExtra(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "albumentations"):
            ASKED.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _NoTrainExtra())
"""

#: The modules that cannot be imported at all without PyTorch: the PyTorch models and the training losses.
TORCH_ONLY_MODULES = [
    "visor.models.architectures.efficientnet_lite",
    "visor.models.architectures.fcos",
    "visor.models.architectures.seg_fpn",
    "visor.train.detection_loss",
]


def _run(script: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VISOR_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-c", BLOCK + script, *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=env)


def test_classify_without_torch_builds_the_model_and_finds_the_school_bus(tmp_path):
    """`visor classify assets/bus.jpg` in a fresh cache: the ONNX graph is built from the PyTorch state dict
    without PyTorch, and nothing even tries to import it."""
    script = """
from visor.cli.main import main
code = main(sys.argv[1:])
sys.stdout.flush()
print("ASKED=" + ",".join(ASKED), file=sys.stderr)
sys.exit(code)
"""
    proc = _run(script, "classify", str(SAMPLE), cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(SAMPLE)
    assert lines[1].split() == ["0.9819", "school", "bus", "(779)"]
    assert proc.stderr.strip().splitlines()[-1] == "ASKED="
    (export,) = (tmp_path / "onnx").iterdir()
    assert export.name == "efficientnet_lite0-579344248a93e230-224x224-c1000-v2"
    assert "built as ONNX by visor (without PyTorch)" in json.loads((export / "card.json").read_text())["source"]


def test_every_module_but_the_pytorch_ones_imports_without_torch(tmp_path):
    script = """
import importlib, json, pkgutil
import visor
failed = {}
for m in pkgutil.walk_packages(visor.__path__, "visor."):
    if m.name == "visor.__main__":
        continue
    try:
        importlib.import_module(m.name)
    except ImportError as e:
        failed[m.name] = e.name
print(json.dumps(failed))
"""
    proc = _run(script, cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == dict.fromkeys(TORCH_ONLY_MODULES, "torch")


def test_training_export_and_the_torch_benchmark_ask_for_the_train_extra(tmp_path, shared_data):
    data = shared_data("imagenette-dev") / "train"
    script = f"""
import json
import os
from visor.cli.main import main
from visor.errors import ConfigError
out = {{}}
out["train_classify"] = main(["train", "classify", {str(data)!r}, "--out", {str(tmp_path / "run")!r}])
out["train_detect"] = main(["train", "detect", {str(data)!r}, "--out", {str(tmp_path / "det")!r}])
from visor.train.export import export_model
try:
    export_model("efficientnet_lite0", {str(tmp_path / "export")!r})
except ConfigError as e:
    out["export"] = str(e)
from visor.benchmark import run_benchmark
report = run_benchmark("efficientnet_lite0", backends="torch,onnx", batch_sizes=[1], seconds=0.05, warmup=0,
                       peak_size=64)
out["bench"] = {{r.backend: [r.status, r.message] for r in report.backends}}
from visor.train.checkpoint import load_checkpoint
try:
    load_checkpoint({str(tmp_path / "missing.safetensors")!r})
except ConfigError as e:
    out["checkpoint"] = str(e)
print("RESULT=" + json.dumps(out))
"""
    proc = _run(script, cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.split("RESULT=", 1)[1])
    assert result["train_classify"] == result["train_detect"] == 2
    assert proc.stderr.count(f"ConfigError: training needs PyTorch: {TRAIN_EXTRA}") == 2
    assert result["export"] == f"checking the export of efficientnet_lite0 against its PyTorch weights needs " \
                               f"PyTorch: {TRAIN_EXTRA}"
    assert result["bench"]["torch"] == ["skipped", f"the torch benchmark backend needs PyTorch: {TRAIN_EXTRA}"]
    assert result["bench"]["onnx"][0] == "ok"
    assert result["checkpoint"] == f"reading a training checkpoint needs PyTorch: {TRAIN_EXTRA}"
    assert not (tmp_path / "run").exists() and not (tmp_path / "export").exists()


@pytest.mark.parametrize("package", ["torch", "albumentations"])
def test_the_train_extra_holds_torch_and_albumentations(package):
    """pyproject: not core dependencies; in the train extra, which the test extra includes."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("=")[0].split("[")[0].strip() for d in project["dependencies"]]
    assert package not in names
    extras = project["optional-dependencies"]
    assert any(d.startswith(package) for d in extras["train"])
    assert any(d.startswith("visor-vision[") and "train" in d for d in extras["test"])
