"""Checkpoints: exact round trip, atomic replacement, no torn file when a save is interrupted."""

from __future__ import annotations

import pytest
import torch

from visor.errors import WeightsError
from visor.train import checkpoint as ckpt_mod
from visor.train.checkpoint import Checkpoint, clean_stale_temp_files, load_checkpoint, save_checkpoint


def _trained_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).square().mean().backward()
        opt.step()
    return model, opt


def test_round_trip_is_bit_exact(tmp_path):
    model, opt = _trained_state()
    rng = torch.get_rng_state()
    path = save_checkpoint(Checkpoint(model.state_dict(), {"epoch": 3, "history": [{"a": 0.1}]},
                                      opt.state_dict(), rng), tmp_path / "last.safetensors")
    back = load_checkpoint(path)
    assert back.state == {"epoch": 3, "history": [{"a": 0.1}]}
    for k, v in model.state_dict().items():
        assert torch.equal(back.model[k], v)
    assert torch.equal(back.rng, rng)
    opt2 = torch.optim.AdamW(model.parameters(), lr=0.1)
    opt2.load_state_dict(back.optimizer)
    for pid, entries in opt.state_dict()["state"].items():
        for key, value in entries.items():
            assert torch.equal(opt2.state_dict()["state"][pid][key], value)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = _trained_state()
    path = tmp_path / "last.safetensors"
    save_checkpoint(Checkpoint(model.state_dict(), {"epoch": 1}, opt.state_dict()), path)
    before = path.read_bytes()

    import safetensors.torch

    real_save = safetensors.torch.save_file

    def dying_save(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:  # half-written file, then the process is "killed"
            f.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(Checkpoint(model.state_dict(), {"epoch": 2}, opt.state_dict()), path)
    assert path.read_bytes() == before
    assert load_checkpoint(path).state == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temp file left either


def test_stale_temp_files_from_a_kill_are_cleaned(tmp_path):
    (tmp_path / ".last.safetensors.abc.tmp").write_bytes(b"torn")
    (tmp_path / "keep.txt").write_text("x")
    clean_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_unreadable_checkpoints_are_typed_errors(tmp_path):
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 50)
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "bad.safetensors")
    assert ckpt_mod.FORMAT == 1


def test_checkpoints_are_written_with_a_deliberate_mode(tmp_path):
    import os
    import stat

    model, _ = _trained_state()
    old = os.umask(0o022)
    try:
        path = save_checkpoint(Checkpoint(model.state_dict(), {"epoch": 1}), tmp_path / "last.safetensors")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # PUBLIC less the umask, not mkstemp's 0o600
        os.umask(0o077)
        save_checkpoint(Checkpoint(model.state_dict(), {"epoch": 2}), path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    finally:
        os.umask(old)
    assert load_checkpoint(path).state == {"epoch": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]
