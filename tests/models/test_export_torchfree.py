"""The cached ONNX export without PyTorch: the restricted state-dict reader (models/statedict.py) and
cached_onnx (models/export.py)."""

import json
import os
import pickle
import sys

import numpy as np
import onnx
import pytest
import torch

from visor.errors import ConfigError, WeightsError
from visor.models import get_card
from visor.models.card import ModelCard, WeightsSource
from visor.models.export import EXPORT_VERSION, cached_onnx
from visor.models.statedict import read_state_dict, read_torch_state_dict
from visor.models.weights import resolve

TRAIN_EXTRA = "pip install 'visor-vision\\[train\\]'"


@pytest.fixture(scope="module")
def lite0_weights():
    card = get_card("efficientnet_lite0")
    return card, resolve(card.weights)


def test_reads_the_default_weights_exactly_as_torch_load(lite0_weights):
    """The packaged file is torch's legacy (pre-zip) format, saved on Windows; every tensor comes back bit-exact."""
    _, path = lite0_weights
    ours = read_torch_state_dict(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref) and len(ours) == 296
    for key, value in ref.items():
        assert ours[key].dtype == value.numpy().dtype and ours[key].shape == tuple(value.shape), key
        assert np.array_equal(ours[key], value.numpy()), key
    assert ours["_bn0.num_batches_tracked"].shape == () and ours["_fc.weight"].shape == (1000, 1280)


@pytest.mark.parametrize("zip_format", [True, False])
def test_zip_and_legacy_files_with_views_and_dtypes(tmp_path, zip_format):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "transposed": base.t(), "slice": base[1:3, 2:], "half": torch.linspace(-2, 2, 9).half().reshape(3, 3),
        "bf16": torch.tensor([1.5, -3.25, 1e-3]).bfloat16(), "long": torch.tensor(7),
        "bool": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3), "param": torch.nn.Parameter(torch.full((2,), 0.5)),
        "int8": torch.tensor([-128, 5, 127], dtype=torch.int8),
    }
    path = tmp_path / "w.pt"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    got = read_state_dict(path, "torch")
    assert list(got) == list(state)
    for key, value in state.items():
        ref = value.detach().float().numpy() if value.dtype == torch.bfloat16 else value.detach().numpy()
        assert got[key].shape == ref.shape and got[key].dtype == ref.dtype and np.array_equal(got[key], ref), key
    assert got["transposed"][0].tolist() == [0, 6, 12, 18] and got["slice"].tolist() == [[8, 9, 10, 11],
                                                                                         [14, 15, 16, 17]]
    assert got["bf16"].tolist() == [1.5, -3.25, 0.00099945068359375]  # bfloat16 widened to float32


def test_a_wrapped_checkpoint_and_safetensors(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "ckpt.pth")
    assert {k: v.tolist() for k, v in read_torch_state_dict(tmp_path / "ckpt.pth").items()} == {"w": [1.0, 1.0]}
    from safetensors.numpy import save_file

    save_file({"a": np.arange(3, dtype=np.float32)}, str(tmp_path / "w.safetensors"))
    assert read_state_dict(tmp_path / "w.safetensors", "safetensors")["a"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(WeightsError, match="format 'onnx'"):
        read_state_dict(tmp_path / "w.safetensors", "onnx")


class _Exploit:
    """Unpickling this with a normal unpickler would create ``marker`` (os.mkdir), proving code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("zip_format", [True, False])
def test_globals_outside_a_state_dict_are_never_run(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(1), "x": _Exploit(str(marker))}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(WeightsError, match=r"refers to posix\.mkdir, which a state dict never needs"):
        read_torch_state_dict(path)
    assert not marker.exists()
    torch.save(torch.nn.Linear(2, 2), path, _use_new_zipfile_serialization=zip_format)  # a whole pickled module
    with pytest.raises(WeightsError, match=r"torch\.nn\.modules\.linear\.Linear"):
        read_torch_state_dict(path)


def test_damaged_files_are_weights_errors(tmp_path, lite0_weights):
    _, path = lite0_weights
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="wrong size"):
        read_torch_state_dict(tmp_path / "cut.pth")
    (tmp_path / "text.pth").write_bytes(b"not weights at all")
    with pytest.raises(WeightsError, match="cannot read weights"):
        read_torch_state_dict(tmp_path / "text.pth")
    (tmp_path / "other.pth").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(WeightsError, match="not a PyTorch weights file"):
        read_torch_state_dict(tmp_path / "other.pth")


def test_cached_onnx_builds_without_pytorch_once(tmp_path, lite0_weights, monkeypatch):
    """With torch unimportable, the default classifier's ONNX is built, cached under the v2 key, and reused."""
    card, path = lite0_weights
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError from here on
    out = cached_onnx(card, path, card.weights.sha256, tmp_path)
    assert EXPORT_VERSION == 2
    assert out == tmp_path / "onnx" / "efficientnet_lite0-579344248a93e230-224x224-c1000-v2" / "model.onnx"
    exported = json.loads((out.parent / "card.json").read_text())
    assert exported["weights"]["format"] == "onnx" and exported["weights"]["location"] == "model.onnx"
    assert exported["source"].endswith(f"built as ONNX by visor (without PyTorch) from weights {card.weights.sha256}")
    assert {n.op_type for n in onnx.load(str(out)).graph.node} == {"Conv", "Clip", "Add", "ReduceMean", "Gemm"}
    stamp = out.stat().st_mtime_ns
    assert cached_onnx(card, path, card.weights.sha256, tmp_path) == out and out.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [out.parent.name]  # no temporary folders left


def test_architectures_without_a_builder_ask_for_the_train_extra(tmp_path, lite0_weights, monkeypatch):
    card, path = lite0_weights
    fcos = ModelCard(name="det", task="detection", architecture="fcos_efficientnet_lite0",
                     weights=WeightsSource(kind="path", location=str(path), format="torch"), labels=("a", "b"),
                     preprocess=card.preprocess)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ConfigError, match=f"exporting fcos_efficientnet_lite0 weights \\(torch\\) to ONNX needs "
                                          f"PyTorch: {TRAIN_EXTRA}"):
        cached_onnx(fcos, path, "0" * 64, tmp_path)
    assert not (tmp_path / "onnx").exists() or not any((tmp_path / "onnx").iterdir())
